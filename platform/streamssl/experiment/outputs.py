"""An experiment's outputs in OUT: summary.csv, comparisons.csv, report.md and knn_vs_progress.png.

Per-run scalars are `streamssl.evaluation.metrics.summarize`'s (through `streamssl.report.load_run`),
in percent here. Only completed runs enter the statistics; failed ones are listed in report.md.
Formats: docs/formats.md, "Experiment directory".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from streamssl import fsio
from streamssl.experiment import stats
from streamssl.experiment.figure import plot_knn_vs_progress
from streamssl.experiment.render import COMPUTE, compute_value, render, summary_text, transfer_columns, transfer_value
from streamssl.experiment.results import Result, by_cell, grid_text, load_results
from streamssl.experiment.spec import ExperimentSpec, run_config

# summary.csv metric -> the key of metrics.summarize
METRICS = {"final_knn": "final", "final_linear": "linear", "knn_at_20": "at_fraction", "knn_auc": "auc"}
STAT_SUFFIXES = ("mean", "std", "ci_low", "ci_high")
COMPARISON_STATS = ("n_pairs", "mean_diff", "ci_low", "ci_high", "p_value", "wilcoxon_p")
FILES = ("summary.csv", "comparisons.csv", "report.md", "knn_vs_progress.png")


def dataset_name(spec: ExperimentSpec, members: list[Result]) -> str:
    done = [r.loaded for r in members if r.loaded is not None]
    return done[0].dataset if done else run_config(spec, members[0].run).dataset.source


def summary_frame(spec: ExperimentSpec, results: list[Result]) -> pd.DataFrame:
    """summary.csv: one row per cell; mean, std and 95% t-interval over the completed seeds."""
    rows = []
    for (method, stream, grid), members in by_cell(results).items():
        done = [r for r in members if r.loaded is not None]
        row = {"dataset": dataset_name(spec, members), "stream": stream, "method": method,
               **{key: grid_text(value) for key, value in grid}, "n": len(done)}
        values = {column: [r.value(key) for r in done] for column, key in METRICS.items()}
        values.update({column: [compute_value(r, *how) for r in done] for column, how in COMPUTE.items()})
        values.update({column: [transfer_value(r, name, kind) for r in done]
                       for column, (name, kind) in transfer_columns(spec).items()})
        for column, numbers in values.items():
            interval = stats.t_interval(numbers)
            row.update(zip((f"{column}_{s}" for s in STAT_SUFFIXES),
                           (interval.mean, interval.std, interval.low, interval.high)))
        rows.append(row)
    names = [*METRICS, *COMPUTE, *transfer_columns(spec)]
    columns = ["dataset", "stream", "method", *spec.grid, "n", *(f"{c}_{s}" for c in names for s in STAT_SUFFIXES)]
    return pd.DataFrame(rows, columns=columns)


def comparison(cells: dict, key: tuple, reference: str) -> stats.Comparison:
    """Seed-paired final kNN of the cell `key` against the reference method's cell."""
    method, stream, grid = key
    mine = {r.run.seed: r.value("final") for r in cells[key] if r.loaded is not None}
    theirs = {r.run.seed: r.value("final") for r in cells[(reference, stream, grid)] if r.loaded is not None}
    return stats.compare(mine, theirs)


def comparisons_frame(spec: ExperimentSpec, results: list[Result]) -> pd.DataFrame:
    """comparisons.csv: one row per (method != reference, stream, grid cell); empty without a reference."""
    columns = ["method", "reference", "stream", *spec.grid, *COMPARISON_STATS]
    rows = []
    cells = by_cell(results)
    for key in cells:
        method, stream, grid = key
        if spec.reference is None or method == spec.reference:
            continue
        c = comparison(cells, key, spec.reference)
        rows.append({"method": method, "reference": spec.reference, "stream": stream,
                     **{k: grid_text(v) for k, v in grid},
                     **{name: getattr(c, name) for name in COMPARISON_STATS}})
    return pd.DataFrame(rows, columns=columns)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    with fsio.atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, na_rep="")


def write_outputs(spec: ExperimentSpec, out: str | Path) -> tuple[dict[str, Path | str], str]:
    """Write the four outputs into OUT (a folder or a URI) from the run directories.

    Returns:
        ({file name: path (a URI as str)} of the files written, Table 1 and the significant
        differences as text).
    """
    paths = {name: fsio.as_path(fsio.join(out, name)) for name in FILES}
    results = load_results(spec, out)
    summary, comparisons = summary_frame(spec, results), comparisons_frame(spec, results)
    write_csv(summary, paths["summary.csv"])
    write_csv(comparisons, paths["comparisons.csv"])
    figure = plot_knn_vs_progress(results, paths["knn_vs_progress.png"])
    if figure is None:
        fsio.remove(paths["knn_vs_progress.png"])
    fsio.write_text(paths["report.md"], render(spec, results, comparisons, figure))
    files = {name: path for name, path in paths.items() if fsio.exists(path)}
    return files, summary_text(spec, results, comparisons)
