"""The report's figures (matplotlib, Agg backend): kNN vs samples seen (the paper's Figure 4),
gradient cosine over updates (Figure 1), buffer class composition over time and representation
health (crop cosine, effective rank) over time.

Each function takes `runs`, objects with attributes ``method``, ``stream``, ``dataset``, ``seed``,
``frame`` (the metrics DataFrame) and ``class_names`` (list of str), writes one PNG, and returns its
path, or None when no run has the metric the figure needs (so the report can say so).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in Ray workers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from streamssl import fsio  # noqa: E402
from streamssl.evaluation import metrics  # noqa: E402

GRAD_COSINE = "train/grad_cosine"
BUFFER_COUNT = "buffer/class_count"
STREAM_ORDER = ("seq", "seq-bl", "seq-im")
DPI = 120


def stream_key(stream: str) -> tuple:
    """Sort key putting the paper's streams first (seq, seq-bl, seq-im), then the others by name."""
    return (STREAM_ORDER.index(stream), "") if stream in STREAM_ORDER else (len(STREAM_ORDER), stream)


def seed_key(seed) -> tuple:
    """Sort key for run.json seeds: numbers in numeric order, then anything else by its text."""
    return (0, seed, "") if isinstance(seed, (int, float)) else (1, 0, str(seed))


def method_colors(runs) -> dict[str, tuple]:
    """One colour per method, stable across figures (first-appearance order)."""
    methods = list(dict.fromkeys(run.method for run in runs))
    cmap = plt.get_cmap("tab10")
    return {method: cmap(i % 10) for i, method in enumerate(methods)}


def _panels(runs) -> dict[tuple[str, str], list]:
    """(dataset, stream) -> runs, in dataset then stream order."""
    groups = defaultdict(list)
    for run in runs:
        groups[(run.dataset, run.stream)].append(run)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0], stream_key(kv[0][1]))))


def _panel_title(key: tuple[str, str], panels: dict) -> str:
    one_dataset = len({dataset for dataset, _ in panels}) == 1
    return f"stream: {key[1]}" if one_dataset else f"{key[0]} · stream: {key[1]}"


def _subplots(count: int, ncols: int, width: float = 4.8, height: float = 3.6, **kwargs):
    ncols = max(1, min(ncols, count))
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kwargs)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def plot_knn_vs_progress(runs, path: Path) -> Path | None:
    """kNN top-1 (%) vs samples seen: one panel per stream, one line per method (mean over seeds,
    band = ±1 std), the untrained network as a dashed line."""
    curves = {id(run): metrics.curve(run.frame, metrics.TOP1, metrics.primary_protocol(run.frame))
              for run in runs}
    if not any(len(c) for c in curves.values()):
        return None
    panels, colors = _panels(runs), method_colors(runs)
    fig, axes = _subplots(len(panels), ncols=3, sharey=True)
    for ax, (key, members) in zip(axes, panels.items()):
        untrained = []
        for method in dict.fromkeys(run.method for run in members):
            mine = [curves[id(run)] for run in members if run.method == method]
            _plot_mean_curve(ax, mine, method, colors[method])
            untrained += [metrics.untrained_value(c["samples_seen"], c["value"]) for c in mine]
        untrained = [u for u in untrained if not np.isnan(u)]
        if untrained:
            ax.axhline(100 * np.mean(untrained), color="0.3", ls="--", lw=1.2, label="untrained")
        ax.set(title=_panel_title(key, panels), xlabel="samples seen", ylabel="kNN top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("kNN accuracy over the stream")
    return _save(fig, path)


def _plot_mean_curve(ax, curves: list, label: str, color) -> None:
    curves = [c for c in curves if len(c)]
    if not curves:
        return
    stacked = np.concatenate([c[["samples_seen", "value"]].to_numpy() for c in curves])
    xs = np.unique(stacked[:, 0])
    groups = [stacked[stacked[:, 0] == x, 1] for x in xs]
    mean = 100 * np.array([g.mean() for g in groups])
    ax.plot(xs, mean, marker="o", ms=3, color=color, label=f"{label} (n={len(curves)})"
            if len(curves) > 1 else label)
    if len(curves) > 1:
        std = 100 * np.array([g.std(ddof=1) if len(g) > 1 else 0.0 for g in groups])
        ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.15, lw=0)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` points: [n] -> [n - window + 1] (window clamped to 1..n)."""
    values = np.asarray(values, dtype=np.float64)
    window = max(1, min(int(window), len(values)))
    sums = np.cumsum(np.concatenate([[0.0], values]))
    return (sums[window:] - sums[:-window]) / window


def plot_grad_cosine(runs, path: Path) -> Path | None:
    """Cosine similarity of consecutive update gradients vs update: raw (faint) and moving average."""
    series = {id(run): metrics.curve_by_update(run.frame, GRAD_COSINE) for run in runs}
    if not any(len(s) for s in series.values()):
        return None
    panels, colors = _panels(runs), method_colors(runs)
    fig, axes = _subplots(len(panels), ncols=3, sharey=True)
    for ax, (key, members) in zip(axes, panels.items()):
        labelled = set()
        for run in members:
            data = series[id(run)]
            if not len(data):
                continue
            x, y = data["update"].to_numpy(), data["value"].to_numpy()
            window = max(1, len(y) // 25)
            color = colors[run.method]
            ax.plot(x, y, color=color, alpha=0.2, lw=0.6)
            label = None if run.method in labelled else f"{run.method} (mean of {window})"
            ax.plot(x[window - 1:], moving_average(y, window), color=color, lw=1.6, label=label)
            labelled.add(run.method)
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set(title=_panel_title(key, panels), xlabel="update", ylabel="cos(g_t, g_t-1)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Gradient cosine similarity between consecutive updates")
    return _save(fig, path)


def plot_buffer_composition(runs, path: Path, max_panels: int = 24) -> Path | None:
    """Stacked area of the buffer's per-class counts vs samples seen: a grid with one row per
    (dataset, method) and one column per stream, showing the first run (lowest seed) of each cell."""
    cells = _first_run_per_cell([run for run in runs if (run.frame["metric"] == BUFFER_COUNT).any()])
    if not cells:
        return None
    rows = list(dict.fromkeys((dataset, method) for dataset, method, _ in cells))
    cols = sorted({stream for _, _, stream in cells}, key=stream_key)
    fig, axes = plt.subplots(len(rows[:max_panels]), len(cols), squeeze=False, sharey=True,
                             figsize=(4.8 * len(cols), 3.2 * len(rows[:max_panels])))
    handles, names = [], []
    for r, row in enumerate(rows[:max_panels]):
        for c, stream in enumerate(cols):
            ax, run = axes[r][c], cells.get((*row, stream))
            if run is None:
                ax.set_visible(False)
                continue
            handles, names = _stack_counts(ax, run) or (handles, names)
            ax.set(title=f"{run.method} · {stream} (seed {run.seed})", xlabel="samples seen",
                   ylabel="buffer entries")
    fig.suptitle("Buffer class composition over the stream")
    right = 1.0
    if handles and len(names) <= 20:  # more classes than that make an unreadable legend
        fig.legend(handles, names, loc="center right", fontsize=8, title="class")
        right = 1.0 - 1.3 / fig.get_figwidth()
    fig.tight_layout(rect=(0, 0, right, 1))
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def _first_run_per_cell(runs) -> dict:
    cells = {}
    for run in sorted(runs, key=lambda run: seed_key(run.seed)):
        cells.setdefault((run.dataset, run.method, run.stream), run)
    ordered = sorted(cells, key=lambda key: (key[0], stream_key(key[2])))
    return {key: cells[key] for key in ordered}


def _stack_counts(ax, run):
    num_classes = metrics.num_classes_of(run.frame, len(run.class_names) or None)
    points, counts = metrics.class_matrix(run.frame, BUFFER_COUNT, num_classes)
    counts = np.nan_to_num(counts, nan=0.0).T  # [C, S]
    if not counts.size:
        return None
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20" if num_classes <= 20 else "viridis")
    colors = [cmap(i if num_classes <= 20 else i / max(1, num_classes - 1)) for i in range(num_classes)]
    polys = ax.stackplot(points, counts, colors=colors, lw=0)
    names = [run.class_names[i] if i < len(run.class_names) else str(i) for i in range(num_classes)]
    return polys, names


CROP_COSINE = "eval/crop_cosine"
EFFECTIVE_RANK = "eval/effective_rank"
HEALTH_METRICS = ((CROP_COSINE, "crop cosine"), (EFFECTIVE_RANK, "effective rank"))


def plot_health(runs, path: Path) -> Path | None:
    """Representation health vs samples seen: crop cosine (crop invariance) and the effective rank of
    the memory features (collapse), one line per run (method · stream, seed when several)."""
    curves = {(id(run), metric): metrics.curve(run.frame, metric) for run in runs for metric, _ in HEALTH_METRICS}
    if not any(len(c) for c in curves.values()):
        return None
    colors = method_colors(runs)
    styles = {stream: ("-", "--", ":", "-.")[i % 4] for i, stream in
              enumerate(sorted({run.stream for run in runs}, key=stream_key))}
    seeds = len({run.seed for run in runs}) > 1
    fig, axes = _subplots(len(HEALTH_METRICS), ncols=2)
    for ax, (metric, label) in zip(axes, HEALTH_METRICS):
        for run in runs:
            curve = curves[(id(run), metric)]
            if len(curve):
                name = f"{run.method} · {run.stream}" + (f" · s{run.seed}" if seeds else "")
                ax.plot(curve["samples_seen"], curve["value"], ls=styles[run.stream], marker="o", ms=3,
                        color=colors[run.method], label=name)
        ax.set(title=label, xlabel="samples seen", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Representation health over the stream")
    return _save(fig, path)
