"""The search's outputs: leaderboard.md/.csv (one row per trial), best.yaml and the figures.

Rows are built from each trial's run directory (OUT/trials/<trial_id>/: run.json, metrics.parquet,
so stopped trials count with the evaluations they reached) plus what Tune knows (params, errors,
wall time of trials that never wrote a run.json).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from streamssl import fsio
from streamssl.errors import StreamSSLError, first_line
from streamssl.fsio import write_text
from streamssl.tune.spec import SORT_COLUMN, TEST_METRICS, SearchSpec, plain_params, trial_config
from streamssl.tune.trial import validation_stats

FRACTION = 0.2  # "kNN at 20% of the stream"
PERCENT_COLUMNS = ("val_knn", "val_knn_auc", "final_knn", "knn_at_20", "knn_auc")


@dataclass(frozen=True)
class TrialRecord:
    """What Tune knows of one trial."""

    trial_id: str
    params: dict
    error: str | None = None
    wall_seconds: float = float("nan")


def records_from_results(grid, spec: SearchSpec) -> list[TrialRecord]:
    """Tune's ResultGrid -> TrialRecords (the trial id is the trial folder's name, see search.py)."""
    keys = [p.key for p in spec.space]
    records = []
    for result in grid:
        params = {key: (result.config or {}).get(key) for key in keys}
        error = first_line(result.error) if result.error else None
        wall = (result.metrics or {}).get("time_total_s", float("nan"))
        records.append(TrialRecord(fsio.name(result.path), plain_params(params), error, float(wall)))
    return records


def trial_row(record: TrialRecord, trials_dir: str | Path) -> dict:
    """One leaderboard row: params, final kNN, kNN at 20%, AUC, updates, wall time, status."""
    from streamssl.evaluation.metrics import summarize
    from streamssl.evaluation.metrics_log import load_metrics, load_run_info

    run_dir = fsio.join(trials_dir, record.trial_id)
    row = {"trial": record.trial_id, **record.params}
    try:
        info, frame = load_run_info(run_dir), load_metrics(run_dir)
    except StreamSSLError:
        return {**row, **dict.fromkeys(PERCENT_COLUMNS, math.nan), "updates": 0,
                "wall_s": record.wall_seconds, "status": _status(record, {}, 0.0)}
    stats = summarize(frame, info.get("num_classes"), FRACTION)
    reached = float(frame["progress"].max()) if len(frame) else 0.0
    updates = info.get("updates", int(frame["update"].max()) if len(frame) else 0)
    wall = info.get("wall_seconds", record.wall_seconds)
    return {**row, **validation_stats(frame), "final_knn": stats["final"], "knn_at_20": stats["at_fraction"],
            "knn_auc": stats["auc"], "updates": int(updates), "wall_s": float(wall),
            "status": _status(record, info, reached)}


def _status(record: TrialRecord, info: dict, reached: float) -> str:
    if record.error:
        return f"error: {record.error}"
    if info.get("status") == "completed":
        return "completed"
    return f"stopped at {reached:.0%}"


def leaderboard(records: list[TrialRecord], trials_dir: str | Path, metric: str = "val_knn",
                mode: str = "max") -> pd.DataFrame:
    """All trials, completed ones first, then by the search metric (best first), ranked from 1."""
    frame = pd.DataFrame([trial_row(r, trials_dir) for r in records])
    if frame.empty:
        return frame
    column = SORT_COLUMN[metric]
    frame["_done"] = frame["status"] == "completed"
    frame = frame.sort_values(["_done", column], ascending=[False, mode == "min"], na_position="last",
                              kind="stable").drop(columns="_done").reset_index(drop=True)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame


def best_row(frame: pd.DataFrame) -> dict | None:
    done = frame[frame["status"] == "completed"] if len(frame) else frame
    return done.iloc[0].to_dict() if len(done) else None


def write_outputs(spec: SearchSpec, records: list[TrialRecord], out: str | Path) -> pd.DataFrame:
    """Write leaderboard.md/.csv, best.yaml (if any trial completed) and the figures into OUT (a folder or URI)."""
    from streamssl.tune import plots  # matplotlib only when figures are drawn

    frame = leaderboard(records, fsio.join(out, "trials"), spec.metric, spec.mode)
    write_text(fsio.join(out, "leaderboard.csv"), frame.to_csv(index=False))
    best = best_row(frame)
    if best is not None:
        write_best(spec, best, fsio.join(out, "best.yaml"))
    figures = plots.write_figures(frame, [p.key for p in spec.space], spec, out)
    write_text(fsio.join(out, "leaderboard.md"), markdown(spec, frame, best, figures))
    return frame


def write_best(spec: SearchSpec, best: dict, path: str | Path) -> None:
    """The best trial's configuration as a complete pipeline (`streamssl run best.yaml --out DIR`)."""
    params = {p.key: best[p.key] for p in spec.space}
    config = trial_config(spec.base_flat, params).to_dict()
    config["name"] = f"{config['name']}-best"
    header = (f"# Best trial {best['trial']} of search {spec.path.name} (base {spec.base.name}), by "
              f"{spec.metric} {best[SORT_COLUMN[spec.metric]]:.4f}:\n"
              f"# validation kNN {best['val_knn']:.4f} (AUC {best['val_knn_auc']:.4f}); test: final kNN "
              f"{best['final_knn']:.4f}, kNN AUC {best['knn_auc']:.4f}; searched: "
              + ", ".join(f"{k}={v}" for k, v in params.items()) + "\n")
    write_text(path, header + yaml.safe_dump(config, sort_keys=False))


def markdown(spec: SearchSpec, frame: pd.DataFrame, best: dict | None, figures: list[str | Path]) -> str:
    lines = [f"# Search {spec.name}", "",
             f"Base pipeline `{spec.base}`; {spec.algorithm} search, {len(frame)} trials, metric "
             f"{spec.metric} ({spec.mode}); ASHA: " + (f"grace {spec.asha.grace:g} of the stream, reduction "
                                                        f"factor {spec.asha.reduction_factor}" if spec.asha else "off"),
             "", "kNN values are top-1 accuracy (%); AUC is the mean kNN over stream progress. `val_knn*` score "
             "the validation subset (train-split images outside the kNN memory); `final_knn`, `knn_at_20` "
             "and `knn_auc` score the test subset and are shown beside, not selected on.", ""]
    if spec.metric in TEST_METRICS:
        lines += [f"**Warning**: this search selects on {spec.metric}, a test metric: the best trial is "
                  "tuned to the test images, and its test score is optimistic. Use val_knn.", ""]
    lines += _table(frame)
    lines += ["", f"Best: trial {best['trial']} -> `best.yaml`" if best else "No trial completed: no best.yaml."]
    lines += [""] + [f"![{Path(fsio.name(f)).stem}]({fsio.name(f)})" for f in figures]
    return "\n".join(lines) + "\n"


def _table(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return ["(no trials)"]
    shown = frame.copy()
    for column in PERCENT_COLUMNS:
        shown[column] = [f"{100 * v:.2f}" if not math.isnan(v) else "-" for v in shown[column]]
    shown["wall_s"] = [f"{v:.1f}" if not math.isnan(v) else "-" for v in shown["wall_s"]]
    cells = [[_cell(v) for v in row] for row in shown.itertuples(index=False)]
    header = [str(c) for c in shown.columns]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in cells]


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
