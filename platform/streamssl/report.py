"""Reports over run directories: report.md with the paper's Table 1 layout (methods x streams,
final kNN %, plus the untrained network's reference row), a per-(method, stream) table of
stream-progress metrics, provenance, and the figures of `streamssl.evaluation.plots`.

Runs are averaged only over seeds: a cell holds the runs of one dataset identity, stream and
resolved config apart from the seed (`streamssl.report_cells`); runs that differ in anything else
are separate rows, and the report says which keys differ.

`write_report(run_dirs, out_dir)` is the one entry point; `streamssl report` and the runner call it.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from streamssl import fsio
from streamssl.errors import StreamSSLError
from streamssl.evaluation import continual, metrics, plots
from streamssl.evaluation.metrics_log import load_metrics, load_run_info
from streamssl.report_cells import dataset_identity, dataset_titles, label_runs, load_config

REPORT_FILE = "report.md"
FLAG = "†"  # marks cells that include a run whose status is not "completed"
PROGRESS_FRACTION = 0.2
FIGURE_FILES = ("knn_vs_progress.png", "grad_cosine.png", "buffer_composition.png", "health.png")


@dataclass
class Run:
    """One run directory, loaded: its run.json, metrics and summary scalars (metrics.summarize)."""

    path: str  # the run dir, a local path or a URI
    info: dict
    frame: pd.DataFrame
    method: str
    stream: str
    dataset: str
    seed: object
    status: str
    class_names: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    dataset_key: tuple = ()  # identity: run.json dataset_id, else the dataset dir (report_cells)
    config: dict | None = None  # config.yaml as dotted keys, minus seed/name/dataset.dir; None without one
    label: str = ""  # the Table-1 row: the method, plus the keys it differs in from its other runs

    @property
    def flagged(self) -> bool:
        return self.status != "completed"


def load_run(run_dir: str | os.PathLike) -> Run:
    """Load and summarize one run directory; StreamSSLError (one line) if it is not a usable one."""
    frame = load_metrics(run_dir)
    info = load_run_info(run_dir)
    for key in ("method", "stream"):
        if not info.get(key):
            raise StreamSSLError(f"{fsio.join(run_dir, 'run.json')}: no {key!r} field")
    stream = info["stream"].get("kind", "?") if isinstance(info["stream"], dict) else str(info["stream"])
    dataset = info.get("dataset_id") if isinstance(info.get("dataset_id"), dict) else info.get("dataset", "?")
    dataset = dataset.get("name", "?") if isinstance(dataset, dict) else str(dataset)
    class_names = [str(name) for name in info.get("class_names") or []]
    run = Run(path=fsio.absolute(run_dir), info=info, frame=frame, method=str(info["method"]), stream=stream,
              dataset=dataset, seed=info.get("seed"), status=str(info.get("status", "unknown")),
              class_names=class_names, dataset_key=dataset_identity(info), config=load_config(run_dir),
              label=str(info["method"]))
    run.stats = metrics.summarize(frame, info.get("num_classes") or len(class_names) or None,
                                  PROGRESS_FRACTION)
    return run


def load_runs(run_dirs) -> list[Run]:
    """Load every run directory once (duplicates by resolved path are dropped), in the order given."""
    seen, runs = set(), []
    for run_dir in run_dirs:
        resolved = fsio.absolute(run_dir)
        if resolved not in seen:
            seen.add(resolved)
            runs.append(load_run(run_dir))
    if not runs:
        raise StreamSSLError("no run directories given")
    return runs


def write_report(run_dirs, out_dir: str | os.PathLike) -> str:
    """Write OUT_DIR/report.md and its PNGs for the given run directories.

    Returns:
        The path of report.md.
    """
    runs = load_runs([run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs))
    notes = label_runs(runs)
    out = fsio.absolute(out_dir)
    fsio.makedirs(out)
    knn_png, grad_png, buffer_png, health_png = (fsio.join(out, name) for name in FIGURE_FILES)
    shown = _as_rows(runs)  # the figures draw a line per row label and a panel per dataset title
    figures = {
        "kNN accuracy vs samples seen": plots.plot_knn_vs_progress(shown, knn_png),
        "gradient cosine over updates": plots.plot_grad_cosine(shown, grad_png),
        "buffer class composition": plots.plot_buffer_composition(shown, buffer_png),
        "representation health": plots.plot_health(shown, health_png),
    }
    for name in FIGURE_FILES:  # a figure skipped now must not leave an older one behind
        if fsio.join(out, name) not in figures.values():
            fsio.remove(fsio.join(out, name))
    path = fsio.join(out, REPORT_FILE)
    fsio.write_text(path, render(runs, figures, notes, out))
    return path


def _as_rows(runs: list[Run]) -> list[Run]:
    titles = dataset_titles(runs)
    return [dataclasses.replace(run, method=run.label, dataset=titles[run.dataset_key]) for run in runs]


def render(runs: list[Run], figures: dict[str, str | None], notes: dict | None = None,
           out_dir: str | None = None) -> str:
    """report.md's text; `notes` (dataset identity -> lines) from report_cells.label_runs; `out_dir`
    (the report's folder) links the runs' segment-matrix heatmaps."""
    if notes is None:
        notes = label_runs(runs)
    lines = ["# streamssl report", ""]
    titles = dataset_titles(runs)
    lines += _header(runs, titles) + _warnings(runs)
    for key, title in titles.items():
        mine = [run for run in runs if run.dataset_key == key]
        lines += _table1(mine, title, notes.get(key, [])) + _details(mine, title)
    lines += _health_table(runs) + continual.report_lines(runs, out_dir) + _compute_table(runs)
    lines += _figures(figures) + _run_list(runs) + _definitions()
    return "\n".join(lines) + "\n"


def _header(runs: list[Run], titles: dict) -> list[str]:
    protocols = sorted({run.stats["protocol"] for run in runs if run.stats["protocol"]})
    seeds = [str(seed) for seed in sorted({run.seed for run in runs}, key=plots.seed_key)]
    flagged = [run for run in runs if run.flagged]
    lines = [f"- datasets: {', '.join(f'`{d}`' for d in titles.values())}",
             f"- kNN protocol: {'; '.join(f'`{p}`' for p in protocols) or 'none logged'}",
             f"- seeds: {', '.join(seeds)}",
             f"- runs: {len(runs)} ({len(runs) - len(flagged)} completed)"]
    if len(protocols) > 1:
        lines.append("- **warning**: the runs used different kNN protocols; their numbers are not comparable")
    for run in flagged:
        lines.append(f"- {FLAG} `{run.path}` has status **{run.status}**; it is included in the tables")
    return lines + [""]


def _warnings(runs: list[Run]) -> list[str]:
    """Operating-point warnings recorded in run.json (`warnings`), each once, with the runs it concerns."""
    by_message = defaultdict(list)
    for run in runs:
        for message in run.info.get("warnings") or []:
            by_message[str(message)].append(run)
    lines = [f"- {', '.join(dict.fromkeys(f'`{r.method}`' for r in members))} ({len(members)} of {len(runs)} "
             f"runs): {message}" for message, members in by_message.items()]
    return ["## Warnings", "", *lines, ""] if lines else []


def _cells(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """(row label, stream) -> runs; call with the runs of one dataset identity."""
    cells = defaultdict(list)
    for run in runs:
        cells[(run.label, run.stream)].append(run)
    return cells


def _rows(runs: list[Run]) -> list[str]:
    """Row labels, method by method in first-appearance order, then each method's settings."""
    methods = list(dict.fromkeys(run.method for run in runs))
    ordered = sorted(runs, key=lambda run: methods.index(run.method))
    return list(dict.fromkeys(run.label for run in ordered))


def _streams(runs: list[Run]) -> list[str]:
    return sorted({run.stream for run in runs}, key=plots.stream_key)


def fmt_stat(values, scale: float = 100.0, digits: int = 2, show_n: bool = True) -> str:
    """'59.71', or 'mean ± std (n=k)' over several runs; 'n/a' when no value is finite."""
    finite = [scale * v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return "n/a"
    if len(values) == 1:
        return f"{finite[0]:.{digits}f}"
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    missing = "" if len(finite) == len(values) else f" of {len(values)}"
    count = f" (n={len(finite)}{missing})" if show_n or missing else ""
    return f"{np.mean(finite):.{digits}f} ± {std:.{digits}f}{count}"


def _table1(runs: list[Run], dataset: str, cell_notes: list[str] = ()) -> list[str]:
    streams, cells = _streams(runs), _cells(runs)
    lines = [f"## Final kNN accuracy (%): {dataset}", "",
             "| method | " + " | ".join(streams) + " |", "|---" * (len(streams) + 1) + "|"]
    untrained_row, notes = _untrained_row(runs, streams)
    lines.append("| untrained | " + " | ".join(untrained_row) + " |")
    for label in _rows(runs):
        row = [_flagged_stat(cells.get((label, stream), []), "final") for stream in streams]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    notes = notes + [f"- {note}" for note in cell_notes]
    return lines + [""] + notes + ([""] if notes else [])


def _flagged_stat(members: list[Run], key: str, show_n: bool = True) -> str:
    if not members:
        return "–"
    text = fmt_stat([run.stats[key] for run in members], show_n=show_n)
    return text + (f" {FLAG}" if any(run.flagged for run in members) else "")


def _untrained_row(runs: list[Run], streams: list[str]) -> tuple[list[str], list[str]]:
    """Untrained kNN per stream (mean over runs); runs with the same seed should agree (same network,
    same evaluation subsets), different seeds need not."""
    row, notes = [], []
    for stream in streams:
        mine = [run for run in runs if run.stream == stream and np.isfinite(run.stats["untrained"])]
        values = [run.stats["untrained"] for run in mine]
        if not values:
            row.append("n/a")
            continue
        row.append(f"{100 * np.mean(values):.2f}")
        by_seed = defaultdict(list)
        for run in mine:
            by_seed[str(run.seed)].append(run.stats["untrained"])
        if any(max(v) - min(v) > 1e-9 for v in by_seed.values()):
            row[-1] += "*"
            notes.append(f"\\* {stream}: the runs' untrained kNN differ ({100 * min(values):.2f} to "
                         f"{100 * max(values):.2f} % over {len(values)} runs); the mean is shown.")
    return row, notes


def _details(runs: list[Run], dataset: str) -> list[str]:
    header = ("| method | stream | n | final kNN % | linear probe % | kNN @20% | untrained % | forgetting (pp) "
              "| seen-class acc % | AUC % |")
    lines = [f"## Accuracy over the stream: {dataset}", "", header, "|---" * 10 + "|"]
    cells = _cells(runs)
    for label in _rows(runs):
        for stream in _streams(runs):
            members = cells.get((label, stream))
            if members:
                stats = [_flagged_stat(members, key, show_n=False)  # the n column says it
                         for key in ("final", "linear", "at_fraction", "untrained", "forgetting", "seen_acc", "auc")]
                lines.append(f"| {label} | {stream} | {len(members)} | " + " | ".join(stats) + " |")
    return lines + [""]


def _health_table(runs: list[Run]) -> list[str]:
    """Per run: crop cosine and effective rank at the first and the last evaluation (section
    omitted when no run logged them)."""
    rows = []
    for run in runs:
        ends = [_first_last(metrics.curve(run.frame, metric)) for metric, _ in plots.HEALTH_METRICS]
        if any(end is not None for end in ends):
            cells = [f"{end[0]:.3f} | {end[1]:.3f}" if end else "– | –" for end in ends]
            head = f"| `{fsio.name(run.path)}` | {run.method} | {run.stream} | {run.seed} | "
            rows.append(head + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["## Representation health", "",
            "Crop cosine: mean cosine between the projections of two training crops of one image (validation "
            "images); effective rank: exp(entropy of the normalized singular values) of the kNN-memory backbone "
            "features. Values at the first and the last evaluation.", "",
            "| run | method | stream | seed | crop cosine start | crop cosine end | effective rank start "
            "| effective rank end |", "|---" * 8 + "|", *rows, ""]


def _compute_table(runs: list[Run]) -> list[str]:
    """Per run: run.json `compute` and the effective learning rate (section omitted when no run has them)."""
    rows = []
    for run in runs:
        c = run.info.get("compute")
        if not isinstance(c, dict):
            continue
        gpu = c.get("gpu_peak_bytes")
        cells = [_num(run.info.get("effective_lr")), _giga(c.get("flops_per_update")),
                 _giga(c.get("flops_total"), 1e12), _num(c.get("samples_per_s")),
                 _num(c.get("data_wait_fraction"), 100), _num(c.get("peak_rss_bytes"), 2 ** -20),
                 _num(gpu, 2 ** -20) if gpu else "–"]
        head = f"| `{fsio.name(run.path)}` | {run.method} | {run.stream} | {run.seed} | "
        rows.append(head + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["## Compute", "",
            "FLOPs: matmuls and convolutions of one update's forward and backward (torch's FlopCounterMode on the "
            "first update), times the updates; data wait: share of the training loop's wall time spent waiting for "
            "the next stream batch; peak memory of rank 0's process. Learning rate: `learner.lr` after "
            "`learner.lr_scaling` (run.json `effective_lr`).", "",
            "| run | method | stream | seed | lr | GFLOPs / update | TFLOPs total | samples/s | data wait % "
            "| peak RSS MiB | GPU peak MiB |", "|---" * 11 + "|", *rows, ""]


def _num(value, scale: float = 1.0) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{scale * value:.4g}"


def _giga(value, unit: float = 1e9) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value / unit:.4g}"


def _first_last(curve: pd.DataFrame) -> tuple[float, float] | None:
    values = curve["value"].to_numpy()
    return (float(values[0]), float(values[-1])) if len(values) else None


def _figures(figures: dict[str, str | None]) -> list[str]:
    lines = ["## Figures", ""]
    for title, path in figures.items():
        lines.append(f"![{title}]({fsio.name(path)})" if path else f"- {title}: no data logged, figure skipped")
        lines.append("")
    return lines


def _run_list(runs: list[Run]) -> list[str]:
    lines = ["## Runs", "", "| run | method | stream | seed | status | updates | samples seen | wall s "
             "| git | evals |", "|---" * 10 + "|"]
    for run in runs:
        info = run.info
        wall = info.get("wall_seconds")
        wall = f"{wall:.0f}" if isinstance(wall, (int, float)) else "?"
        sha = str(info.get("git_sha") or "?")[:10]
        lines.append(f"| `{run.path}` | {run.method} | {run.stream} | {run.seed} | {run.status} "
                     f"| {info.get('updates', '?')} | {info.get('samples_seen', '?')} | {wall} | {sha} "
                     f"| {run.stats['evals']} |")
    return lines + [""]


def _definitions() -> list[str]:
    return [
        "## Definitions", "",
        "- **final kNN**: top-1 of the last evaluation; cells with several runs (seeds) show "
        "mean ± sample std (n). A cell averages only runs of the same dataset, stream and resolved config "
        "(config.yaml) apart from the seed; a method's runs that differ in other keys are separate rows "
        "named by those keys.",
        "- **linear probe**: top-1 of a linear classifier trained on the frozen backbone features of the "
        "labelled kNN-memory split at the last evaluation (`eval.linear`); n/a when the run has none.",
        "- **untrained**: the same network evaluated before any update (samples seen = 0).",
        f"- **kNN @20%**: the first evaluation at or after {PROGRESS_FRACTION:.0%} of the stream.",
        "- **forgetting**: per class, the best accuracy at an earlier trained evaluation (after the "
        "class was first seen, when the run logs `stream/classes_seen`) minus the final accuracy; "
        "averaged over the classes with such an earlier evaluation; percentage points, negative = improved.",
        "- **seen-class acc**: mean accuracy over the classes the stream has shown so far, averaged over "
        "the trained evaluations (needs `stream/classes_seen`).",
        "- **AUC**: trapezoid area under kNN top-1 over stream progress, divided by the progress span "
        "covered (= the mean accuracy over the stream when evaluations span 0..1).",
        f"- {FLAG}: includes a run whose status is not `completed`.",
        "",
    ]
