"""Continual-learning metrics of a run from its per-class kNN log: the accuracy matrix over
evaluation points, and for segmented streams (seq, seq-bl, seq-im) the segment matrix R with
backward and forward transfer and the stability gap.

R[i][j] is the mean per-class kNN top-1 (%) over the classes of segment j (segments numbered 1..T in
stream order) at the end of segment i, row 0 being the untrained network (Lopez-Paz & Ranzato 2017,
GEM, Sec. 2, whose R has a row per task; our row 0 is their vector b̄ of accuracies at
initialization):

    BWT = mean over j < T of (R[T][j] - R[j][j])
    FWT = mean over j >= 2 of (R[j-1][j] - R[0][j])

The stability gap (De Lange et al. 2023, Sec. 3) is read off the accuracy matrix: for each segment,
the lowest mean accuracy of its classes at any evaluation from its end on.

A segment's end is read from the stream's stream.json (class order, counts, classes per segment).
Evaluations happen between stream batches, so row i is the first evaluation at or after segment i's
end and before one more round of stream batches (`stream_batch` x workers) has passed; with no such
evaluation the row is missing (NaN) and a note says so: `eval.points: segments` puts an evaluation
at every segment end (`segment_points`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from streamssl import fsio
from streamssl.evaluation import metrics

ACC_FILE = "acc_matrix.csv"
SEGMENT_FILE = "segment_matrix.csv"
HEATMAP_FILE = "segment_matrix.png"
SEGMENTED_KINDS = ("seq", "seq-bl", "seq-im")


@dataclass
class SegmentMatrix:
    """R [(T+1), T] in %, the samples_seen of each row's evaluation (-1: none), and notes."""

    values: np.ndarray
    rows_at: list[int]
    notes: list[str] = field(default_factory=list)

    @property
    def segments(self) -> int:
        return self.values.shape[1]


def accuracy_matrix(frame: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """Per-class kNN top-1 (%) at every evaluation: a `samples_seen` column, then one column per class id
    (NaN: the class is absent from the test subset). The run's primary protocol (SCALE's when logged)."""
    protocol = metrics.primary_protocol(frame)
    points, acc = metrics.class_matrix(frame, metrics.CLASS_ACC, num_classes, protocol)
    table = pd.DataFrame(100.0 * acc, columns=[str(c) for c in range(num_classes)])
    table.insert(0, "samples_seen", points)
    return table


def segment_classes(stream: dict) -> list[list[int]]:
    """The class ids of each segment, in stream order (stream.json's class_order, classes_per_segment)."""
    order, per = [int(c) for c in stream["class_order"]], int(stream.get("classes_per_segment") or 1)
    return [order[i:i + per] for i in range(0, len(order), per)]


def segment_ends(stream: dict, end: int | None = None) -> list[int]:
    """Samples seen at the end of each segment (its last sample's position + 1), capped at `end`
    (the samples the workers consume, when several workers leave a remainder)."""
    counts = [int(n) for n in stream["class_counts"]]
    per = int(stream.get("classes_per_segment") or 1)
    ends = np.cumsum([sum(counts[i:i + per]) for i in range(0, len(counts), per)])
    return [int(min(e, end)) if end is not None else int(e) for e in ends]


def segment_points(stream_dir: str | Path) -> list[float]:
    """Stream fractions of the segment ends of a materialized stream, for `eval.points: segments`
    ([] for streams without segments). `train.evaluate.eval_positions` turns fraction f into
    round(f * total) samples, which gives each end back exactly."""
    stream = fsio.read_json(fsio.join(stream_dir, "stream.json"))
    if stream.get("kind") not in SEGMENTED_KINDS:
        return []
    total = int(stream["num_samples"])
    return [e / total for e in segment_ends(stream)]


def resolve_points(points, stream_dir: str | Path) -> list | None:
    """`eval.points` with `segments` (the value itself, or an item of the list) replaced by the segment
    ends' fractions; other values pass through (None: the loop's default points)."""
    if points == "segments":
        return sorted({0.0, *segment_points(stream_dir), 1.0})
    if isinstance(points, (list, tuple)) and "segments" in points:
        rest = [p for p in points if p != "segments"]
        return sorted({*rest, 0.0, *segment_points(stream_dir)})
    return points


def segment_matrix(acc: pd.DataFrame, segments: list[list[int]], ends: list[int], within: int = 1) -> SegmentMatrix:
    """R from the accuracy matrix: row 0 at samples_seen 0, row i at the first evaluation in
    [ends[i-1], ends[i-1] + within).

    Args:
        acc: `accuracy_matrix`'s table.
        segments: class ids per segment (`segment_classes`).
        ends: samples seen at each segment's end (`segment_ends`).
        within: how far past a segment's end its row's evaluation may lie (a round of stream batches).
    """
    seen = acc["samples_seen"].to_numpy()
    means = _segment_means(acc, segments)  # [E, T]
    starts = [0, *ends]
    rows, at, notes = [], [], []
    for i, start in enumerate(starts):
        hit = np.flatnonzero((seen >= start) & (seen < start + max(within, 1)))
        if len(hit):
            rows.append(means[hit[0]])
            at.append(int(seen[hit[0]]))
        else:
            rows.append(np.full(len(segments), np.nan))
            at.append(-1)
            what = "the untrained network" if i == 0 else f"the end of segment {i} ({start} samples)"
            notes.append(f"no evaluation at {what}; set eval.points: segments")
    return SegmentMatrix(np.array(rows), at, notes)


def _segment_means(acc: pd.DataFrame, segments: list[list[int]]) -> np.ndarray:
    values = acc.drop(columns="samples_seen").to_numpy(dtype=np.float64)
    out = np.full((len(values), len(segments)), np.nan)
    for j, classes in enumerate(segments):
        cols = [c for c in classes if c < values.shape[1]]
        block = values[:, cols]
        present = ~np.isnan(block)
        with np.errstate(invalid="ignore"):
            out[:, j] = np.where(present.any(axis=1), np.nansum(block, axis=1) / present.sum(axis=1), np.nan)
    return out


def backward_transfer(r: np.ndarray) -> float:
    """mean over j < T of (R[T][j] - R[j][j]), segments 1-based (R's columns 0-based)."""
    t = r.shape[1]
    return _mean([r[t, j - 1] - r[j, j - 1] for j in range(1, t)])


def forward_transfer(r: np.ndarray) -> float:
    """mean over j >= 2 of (R[j-1][j] - R[0][j]), segments 1-based (R's columns 0-based)."""
    t = r.shape[1]
    return _mean([r[j - 1, j - 1] - r[0, j - 1] for j in range(2, t + 1)])


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite and len(finite) == len(values) else float("nan")


def stability_min(acc: pd.DataFrame, segments: list[list[int]], ends: list[int]) -> list[float]:
    """Per segment, the lowest mean accuracy (%) of its classes at any evaluation from its end on."""
    seen = acc["samples_seen"].to_numpy()
    means = _segment_means(acc, segments)
    out = []
    for j, end in enumerate(ends):
        after = means[seen >= end, j]
        after = after[~np.isnan(after)]
        out.append(float(after.min()) if len(after) else float("nan"))
    return out


def write_continual(run_dir: str | Path) -> dict:
    """Write acc_matrix.csv and, for a segmented stream, segment_matrix.csv and its heatmap into a run
    dir; returns the run.json fields (bwt, fwt, stability_min, segment_rows, continual_notes; {} when
    the run logged no per-class kNN)."""
    from streamssl.evaluation.metrics_log import load_metrics, load_run_info

    run_dir = os.fspath(run_dir)
    frame, info = load_metrics(run_dir), load_run_info(run_dir)
    acc = accuracy_matrix(frame, metrics.num_classes_of(frame, info.get("num_classes")))
    if not len(acc):
        return {}
    with fsio.atomic_path(fsio.join(run_dir, ACC_FILE)) as tmp:
        acc.to_csv(tmp, index=False, float_format="%.4f")
    stream = _stream_info(info)
    if stream is None or stream.get("kind") not in SEGMENTED_KINDS:
        return {}
    segments, ends = segment_classes(stream), segment_ends(stream, _consumed(info))
    r = segment_matrix(acc, segments, ends, _round_size(run_dir))
    write_segment_csv(r, fsio.join(run_dir, SEGMENT_FILE))
    plot_segment_matrix(r, fsio.join(run_dir, HEATMAP_FILE))
    # None, not NaN: run.json stays valid JSON
    return {"bwt": _finite(backward_transfer(r.values)), "fwt": _finite(forward_transfer(r.values)),
            "stability_min": [_finite(v) for v in stability_min(acc, segments, ends)], "segment_rows": r.rows_at,
            "continual_notes": r.notes}


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _stream_info(info: dict) -> dict | None:
    path = fsio.join(info.get("stream_dir") or "", "stream.json")
    return fsio.read_json(path) if info.get("stream_dir") and fsio.is_file(path) else None


def _consumed(info: dict) -> int | None:
    total, unused = info.get("stream_samples"), info.get("unused_samples") or 0
    return int(total) - int(unused) if total is not None else None


def _round_size(run_dir: Path) -> int:
    """Samples the workers take per step (stream_batch x workers, from config.yaml; 1 without it)."""
    import yaml

    try:
        config = yaml.safe_load(fsio.read_text(fsio.join(run_dir, "config.yaml"))) or {}
        return int(config["learner"]["stream_batch"]) * int((config.get("scaling") or {}).get("num_workers", 1))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return 1


def write_segment_csv(r: SegmentMatrix, path: Path) -> Path:
    """Header `after_segment,1,2,...,T`; rows after_segment = 0 (untrained), 1, ..., T; values in %."""
    table = pd.DataFrame(r.values, columns=[str(j) for j in range(1, r.segments + 1)])
    table.insert(0, "after_segment", range(r.segments + 1))
    with fsio.atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    return path


def read_segment_csv(path: str | Path) -> np.ndarray:
    """R [(T+1), T] back from segment_matrix.csv, rows in after_segment order."""
    table = pd.read_csv(path).sort_values("after_segment")
    return table.drop(columns="after_segment").to_numpy(dtype=np.float64)


def plot_segment_matrix(r: SegmentMatrix, path: Path) -> Path:
    """Heatmap of R: rows after segment 0..T, columns segments 1..T, values annotated up to 20 segments."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in Ray workers
    import matplotlib.pyplot as plt

    t = r.segments
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * t + 1.5, 1.0 + 0.4 * (t + 1)))
    image = ax.imshow(np.ma.masked_invalid(r.values), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(t), [str(j) for j in range(1, t + 1)])
    ax.set_yticks(range(t + 1), [str(i) for i in range(t + 1)])
    ax.set_xlabel("segment j (its classes)")
    ax.set_ylabel("after segment i")
    ax.set_title("kNN top-1 % per segment, R[i][j]")
    if t <= 20:
        for i, j in np.ndindex(r.values.shape):
            if math.isfinite(r.values[i, j]):
                ax.text(j, i, f"{r.values[i, j]:.0f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(image, ax=ax, label="%")
    fig.tight_layout()
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def report_lines(runs, out_dir: str | Path | None = None) -> list[str]:
    """report.md's continual-learning section: BWT, FWT and the stability minima of the runs that
    have them in run.json, and (given the report's folder) their heatmaps; [] when no run has them."""
    rows, figures = [], []
    for run in runs:
        info = run.info
        if "bwt" not in info:
            continue
        gaps = ", ".join(_pct(v) for v in info.get("stability_min") or [])
        rows.append(f"| `{fsio.name(run.path)}` | {run.method} | {run.stream} | {run.seed} | {_pp(info.get('bwt'))} "
                    f"| {_pp(info.get('fwt'))} | {gaps} |")
        heatmap = fsio.join(run.path, HEATMAP_FILE)
        if out_dir is not None and fsio.is_file(heatmap):
            link = heatmap if fsio.is_uri(heatmap) or fsio.is_uri(out_dir) else os.path.relpath(heatmap, out_dir)
            figures += [f"![segment matrix: {fsio.name(run.path)}]({link})", ""]
    if not rows:
        return []
    return ["## Continual-learning metrics", "",
            "R[i][j]: mean per-class kNN top-1 over segment j's classes at the end of segment i (row 0: untrained; "
            f"`{SEGMENT_FILE}`, heatmap `{HEATMAP_FILE}` in each run dir). BWT = mean over j < T of "
            "(R[T][j] - R[j][j]); FWT = mean over j >= 2 of (R[j-1][j] - R[0][j]); stability minimum: each "
            "segment's lowest accuracy from its end on. Percentage points / %.", "",
            "| run | method | stream | seed | BWT (pp) | FWT (pp) | stability minimum per segment (%) |",
            "|---" * 7 + "|", *rows, "", *figures]


def _pct(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.1f}"


def _pp(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:+.2f}"
