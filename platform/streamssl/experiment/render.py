"""report.md of an experiment: Table 1 with 95% intervals and the untrained floor, the seed-paired
comparisons with the reference method, which of them are significant, failed runs, the figure."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from streamssl import fsio
from streamssl.evaluation.plots import stream_key
from streamssl.experiment import stats
from streamssl.experiment.results import Result, by_cell, floor_interval, grid_text
from streamssl.experiment.spec import ExperimentSpec

ALPHA = 0.05  # significance level of the paired tests
# summary.csv compute column -> (run.json `compute` key, scale): accuracy against compute
COMPUTE = {"tflops_total": ("flops_total", 1e-12), "samples_per_s": ("samples_per_s", 1.0),
           "data_wait_pct": ("data_wait_fraction", 100.0), "peak_rss_mib": ("peak_rss_bytes", 2 ** -20)}
TRANSFER = ("knn", "linear")  # transfer_<dataset>_<this>: kNN (SCALE's protocol) and linear probe top-1 %
TABLES = (("final", "Table 1: final kNN top-1 (%)"), ("linear", "Linear probe top-1 at the end (%)"))


def cell_text(interval: stats.Interval, seeds: int) -> str:
    """'66.35 ± 1.22' (mean ± half-width of the 95% t-interval); n shown when it is not every seed."""
    if interval.n == 0:
        return "n/a"
    text = f"{interval.mean:.2f}" if interval.n == 1 else f"{interval.mean:.2f} ± {interval.half_width:.2f}"
    return text + (f" (n={interval.n})" if interval.n != seeds else "")


def grid_combos(spec: ExperimentSpec) -> list[tuple]:
    keys = list(spec.grid)
    return [tuple(zip(keys, combo)) for combo in itertools.product(*(spec.grid[k] for k in keys))]


def grid_label(grid: tuple) -> str:
    return ", ".join(f"{key}={grid_text(value)}" for key, value in grid)


def table(spec: ExperimentSpec, results: list[Result], key: str, title: str) -> list[str]:
    """One Table-1 block per grid combination: rows untrained (final kNN only) + methods, columns streams."""
    cells = by_cell(results)
    streams = sorted(spec.streams, key=stream_key)
    seeds = len(spec.seeds)
    lines = []
    for grid in grid_combos(spec):
        lines += [f"## {title}" + (f": {grid_label(grid)}" if grid else ""), "",
                  "| method | " + " | ".join(streams) + " |", "|---" * (len(streams) + 1) + "|"]
        if key == "final":
            floor = [cell_text(floor_interval(results, s, grid), seeds) for s in streams]
            lines.append("| untrained | " + " | ".join(floor) + " |")
        for method in spec.methods:
            row = [cell_text(stats.t_interval([r.value(key) for r in cells[(method, s, grid)]]), seeds)
                   for s in streams]
            lines.append(f"| {method} | " + " | ".join(row) + " |")
        lines.append("")
    return lines


def _num(value: float, fmt: str) -> str:
    return format(value, fmt) if np.isfinite(value) else "–"


def comparison_rows(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict("records")


def comparison_table(spec: ExperimentSpec, frame: pd.DataFrame) -> list[str]:
    if spec.reference is None:
        return []
    head = ["method", "stream", *spec.grid, "pairs", "difference (pp)", "95% CI (pp)", "p (paired t)",
            "p (Wilcoxon)", f"p < {ALPHA}"]
    lines = [f"## Comparisons with `{spec.reference}` (final kNN, paired by seed)", "",
             "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for row in comparison_rows(frame):
        ci = f"{row['ci_low']:+.2f} to {row['ci_high']:+.2f}" if np.isfinite(row["ci_low"]) else "–"
        cells = [row["method"], row["stream"], *(str(row[k]) for k in spec.grid), str(row["n_pairs"]),
                 _num(row["mean_diff"], "+.2f"), ci, _num(row["p_value"], ".3g"), _num(row["wilcoxon_p"], ".3g"),
                 "yes" if _significant(row) else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _significant(row: dict) -> bool:
    return bool(np.isfinite(row["p_value"]) and row["p_value"] < ALPHA)


def significance(spec: ExperimentSpec, frame: pd.DataFrame) -> list[str]:
    """The differences with paired-t p < 0.05, in words; or a line saying there are none."""
    if spec.reference is None:
        return []
    lines = [f"## Significant differences (paired t-test, p < {ALPHA})", ""]
    rows = comparison_rows(frame)
    for row in (r for r in rows if _significant(r)):
        where = row["stream"] + "".join(f", {k}={row[k]}" for k in spec.grid)
        word = "above" if row["mean_diff"] > 0 else "below"
        lines.append(f"- **{row['method']}** is {word} {spec.reference} on {where}: {row['mean_diff']:+.2f} pp "
                     f"(95% CI {row['ci_low']:+.2f} to {row['ci_high']:+.2f}, p = {row['p_value']:.3g}, "
                     f"{row['n_pairs']} seeds)")
    if not any(_significant(r) for r in rows):
        pairs = sorted({int(r["n_pairs"]) for r in rows})
        lines.append(f"- none: no method differs from {spec.reference} at p < {ALPHA} "
                     f"(seed pairs per test: {', '.join(map(str, pairs)) or '0'})")
    lines += ["", f"{len(rows)} test(s), not corrected for multiple comparisons: at p < {ALPHA}, one test in "
              f"{round(1 / ALPHA)} of a method that does not differ comes out significant by chance.", ""]
    return lines


def header(spec: ExperimentSpec, results: list[Result]) -> list[str]:
    done = [r for r in results if r.loaded is not None]
    protocols = sorted({r.loaded.stats["protocol"] for r in done if r.loaded.stats["protocol"]})
    datasets = sorted({r.loaded.dataset for r in done})
    lines = [f"# Experiment `{spec.name}`", "",
             f"- spec: `{spec.path}`; base pipeline: `{spec.base}`",
             f"- dataset: {', '.join(f'`{d}`' for d in datasets) or 'n/a'}; "
             f"kNN protocol: {'; '.join(f'`{p}`' for p in protocols) or 'none logged'}",
             f"- methods: {', '.join(spec.methods)}; streams: {', '.join(spec.streams)}; "
             f"seeds: {', '.join(map(str, spec.seeds))}" + (f"; reference: {spec.reference}" if spec.reference else ""),
             f"- runs: {len(results)} ({len(done)} completed, {len(results) - len(done)} not)",
             "- cells: mean ± half-width of the 95% Student-t interval over seeds; (n=k) when only k seeds "
             "completed; a single seed shows its value alone (no interval)"]
    if spec.overrides:
        lines.append("- overrides: " + ", ".join(f"`{k}={grid_text(v)}`" for k, v in spec.overrides.items()))
    return lines + [""]


def failures(results: list[Result]) -> list[str]:
    failed = [r for r in results if r.loaded is None]
    if not failed:
        return []
    lines = ["## Runs not in the statistics", ""]
    lines += [f"- `runs/{r.run.name}`: {r.status}" + (f" ({r.error})" if r.error else "") for r in failed]
    return lines + [""]


def figure_lines(figure: Path | str | None) -> list[str]:
    if figure is None:
        return ["## Figure", "", "- kNN vs samples seen: no completed run logged kNN, figure skipped", ""]
    alt = "kNN accuracy vs samples seen, mean and 95% interval over seeds"
    return ["## Figure", "", f"![{alt}]({fsio.name(figure)})", ""]


def summary_text(spec: ExperimentSpec, results: list[Result], comparisons: pd.DataFrame) -> str:
    """Table 1 and the significant differences: what `streamssl experiment` and the demo print."""
    return "\n".join(table(spec, results, *TABLES[0]) + significance(spec, comparisons))


def compute_value(result: Result, key: str, scale: float) -> float:
    """A run.json `compute` figure, scaled (NaN when the run did not record it)."""
    value = (result.loaded.info.get("compute") or {}).get(key) if result.loaded is not None else None
    return float("nan") if not isinstance(value, (int, float)) else scale * value


def transfer_columns(spec: ExperimentSpec) -> dict[str, tuple[str, str]]:
    """summary.csv column -> (transfer dataset folder name, knn | linear)."""
    return {f"transfer_{fsio.name(d)}_{kind}": (fsio.name(d), kind) for d in spec.transfer for kind in TRANSFER}


def transfer_value(result: Result, name: str, kind: str) -> float:
    """Top-1 % of a run's transfer evaluation on dataset `name` (NaN when it has none)."""
    if result.loaded is None:
        return float("nan")
    path = fsio.join(result.loaded.path, "transfer", name, "eval.json")
    if not fsio.is_file(path):
        return float("nan")
    scores = fsio.read_json(path)["results"].get("knn_scale" if kind == "knn" else "linear") or {}
    top1 = scores.get("top1")
    return float("nan") if top1 is None else 100.0 * top1


def compute_table(spec: ExperimentSpec, results: list[Result]) -> list[str]:
    """Accuracy against compute (and transfer, with the spec's `transfer`), one row per cell: means over
    the completed seeds; omitted when no run recorded compute."""
    if not any(r.loaded is not None and r.loaded.info.get("compute") for r in results):
        return []
    transfer = transfer_columns(spec)
    head = ["method", "stream", *spec.grid, "final kNN %", "TFLOPs", "samples/s", "data wait %", "peak RSS MiB",
            *(f"{name} {kind} %" for name, kind in transfer.values())]
    lines = ["## Accuracy against compute", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for (method, stream, grid), members in by_cell(results).items():
        done = [r for r in members if r.loaded is not None]
        numbers = [[r.value("final") for r in done],
                   *([compute_value(r, *how) for r in done] for how in COMPUTE.values()),
                   *([transfer_value(r, *where) for r in done] for where in transfer.values())]
        cells = [_mean_text(values) for values in numbers]
        lines.append("| " + " | ".join([method, stream, *(str(grid_text(v)) for _, v in grid), *cells]) + " |")
    return lines + ["", "TFLOPs: matmul and convolution FLOPs of all updates (run.json `compute`); data wait: share of "
                    "the training loop waiting for stream data; peak RSS of rank 0's process.", ""]


def _mean_text(values: list[float]) -> str:
    finite = [v for v in values if np.isfinite(v)]
    return f"{np.mean(finite):.4g}" if finite else "n/a"


def render(spec: ExperimentSpec, results: list[Result], comparisons: pd.DataFrame, figure: Path | str | None) -> str:
    lines = header(spec, results)
    lines += table(spec, results, *TABLES[0])
    if any(r.loaded is not None and np.isfinite(r.loaded.stats["linear"]) for r in results):
        lines += table(spec, results, *TABLES[1])
    lines += comparison_table(spec, comparisons) + significance(spec, comparisons)
    lines += compute_table(spec, results) + failures(results) + figure_lines(figure)
    lines += ["Per-cell numbers with standard deviations and interval bounds: `summary.csv`; the paired tests: "
              "`comparisons.csv`; each run's own report: `runs/<cell>-s<seed>/report.md`.", ""]
    return "\n".join(lines)
