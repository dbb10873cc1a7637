"""knn_vs_progress.png of an experiment: one panel per stream, per cell the mean kNN curve over seeds
with its 95% Student-t band, and the untrained floor (mean over seeds) as a dashed line."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from streamssl import fsio  # noqa: E402
from streamssl.evaluation import metrics  # noqa: E402
from streamssl.evaluation.plots import stream_key  # noqa: E402
from streamssl.experiment import stats  # noqa: E402


def mean_band(curves: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(samples_seen, mean, low, high) in percent over the curves logged at each position."""
    stacked = np.concatenate([c[["samples_seen", "value"]].to_numpy(dtype=np.float64) for c in curves])
    xs = np.unique(stacked[:, 0])
    intervals = [stats.t_interval(100 * stacked[stacked[:, 0] == x, 1]) for x in xs]
    mean = np.array([i.mean for i in intervals])
    low = np.array([i.low if np.isfinite(i.low) else i.mean for i in intervals])
    high = np.array([i.high if np.isfinite(i.high) else i.mean for i in intervals])
    return xs, mean, low, high


def _label(result) -> str:
    grid = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in result.run.grid)
    return result.run.method + (f" ({grid})" if grid else "")


def _panels(results) -> dict[str, dict[str, list]]:
    """stream -> line label -> kNN curves of the completed runs, in stream then matrix order."""
    panels: dict[str, dict[str, list]] = defaultdict(dict)
    for r in results:
        if r.loaded is None:
            continue
        frame = r.loaded.frame
        curve = metrics.curve(frame, metrics.TOP1, metrics.primary_protocol(frame))
        if len(curve):
            panels[r.run.stream].setdefault(_label(r), []).append(curve)
    return dict(sorted(panels.items(), key=lambda kv: stream_key(kv[0])))


def plot_knn_vs_progress(results, path: str | Path) -> str | Path | None:
    """Write the figure; None when no completed run logged kNN."""
    panels = _panels(results)
    if not panels:
        return None
    labels = list(dict.fromkeys(label for lines in panels.values() for label in lines))
    colors = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.8 * nrows), squeeze=False, sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (stream, lines) in zip(axes.flat, panels.items()):
        floors = []
        for label, curves in lines.items():
            xs, mean, low, high = mean_band(curves)
            ax.plot(xs, mean, marker="o", ms=3, color=colors[label], label=f"{label} (n={len(curves)})")
            ax.fill_between(xs, low, high, color=colors[label], alpha=0.15, lw=0)
            floors += [100 * metrics.untrained_value(c["samples_seen"], c["value"]) for c in curves]
        floors = [f for f in floors if np.isfinite(f)]
        if floors:
            ax.axhline(np.mean(floors), color="0.3", ls="--", lw=1.2, label="untrained")
        ax.set(title=f"stream: {stream}", xlabel="samples seen", ylabel="kNN top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("kNN accuracy over the stream: mean and 95% interval over seeds")
    fig.tight_layout()
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path
