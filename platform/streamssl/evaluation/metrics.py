"""Online continual-learning summaries of a run's kNN curve (pure functions over arrays or a
metrics DataFrame with the docs/formats.md columns).

Conventions (docs/formats.md, "Run directory"):
* ``eval/knn_top1`` rows (class_id -1) hold top-1 accuracy in [0, 1] at each eval point;
  ``eval/knn_class_acc`` rows hold per-class accuracy (class_id = class; NaN = class absent from test).
* The eval at ``samples_seen == 0`` is the untrained network (before any update).
* ``stream/classes_seen`` rows give, per eval point, the number of stream samples of class
  ``class_id`` seen so far; a class counts as seen once that is > 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TOP1 = "eval/knn_top1"
CLASS_ACC = "eval/knn_class_acc"
LINEAR_TOP1 = "eval/linear_top1"
CLASSES_SEEN = "stream/classes_seen"
# progress values are floats written by the loop; 0.2 of 1,000 batches may be stored as 0.19999999
_PROGRESS_EPS = 1e-9


def primary_protocol(frame: pd.DataFrame, metric: str = TOP1) -> str | None:
    """The protocol a report should use for `metric`: SCALE's when present, else the first by name."""
    protocols = sorted(frame.loc[frame["metric"] == metric, "protocol"].unique())
    scale = [p for p in protocols if p.startswith("knn:scale")]
    return (scale or protocols or [None])[0]


def curve(frame: pd.DataFrame, metric: str = TOP1, protocol: str | None = None) -> pd.DataFrame:
    """One metric's class-agnostic rows, one per samples_seen (the last logged wins), sorted.

    Returns:
        DataFrame with columns samples_seen, progress, update, value.
    """
    rows = frame[(frame["metric"] == metric) & (frame["class_id"] < 0)]
    if protocol is not None:
        rows = rows[rows["protocol"] == protocol]
    rows = rows.drop_duplicates("samples_seen", keep="last").sort_values("samples_seen")
    return rows[["samples_seen", "progress", "update", "value"]].reset_index(drop=True)


def curve_by_update(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """A per-update metric's class-agnostic rows (e.g. train/grad_cosine), sorted by update.

    Returns:
        DataFrame with columns update, samples_seen, value (non-finite values dropped).
    """
    rows = frame[(frame["metric"] == metric) & (frame["class_id"] < 0)]
    rows = rows[np.isfinite(rows["value"].to_numpy())].sort_values("update", kind="stable")
    return rows[["update", "samples_seen", "value"]].reset_index(drop=True)


def final_value(values: np.ndarray) -> float:
    """The last value of a curve (NaN for an empty one)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values[-1]) if len(values) else float("nan")


def value_at_progress(progress: np.ndarray, values: np.ndarray, fraction: float = 0.2) -> float:
    """The value at the first eval point at or after `fraction` of the stream (NaN if none)."""
    progress = np.asarray(progress, dtype=np.float64)
    after = np.flatnonzero(progress >= fraction - _PROGRESS_EPS)
    return float(np.asarray(values, dtype=np.float64)[after[0]]) if len(after) else float("nan")


def untrained_value(samples_seen: np.ndarray, values: np.ndarray) -> float:
    """The value logged at samples_seen == 0, before any update (NaN if there is none)."""
    at_zero = np.flatnonzero(np.asarray(samples_seen) == 0)
    return float(np.asarray(values, dtype=np.float64)[at_zero[-1]]) if len(at_zero) else float("nan")


def area_under_curve(progress: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid area under values(progress), divided by the progress span covered.

    With eval points at progress 0 and 1 this is the plain area over 0..1; dividing by the span keeps
    it a mean accuracy (same units as the values) when a run's evals cover only part of the stream.
    NaN with fewer than 2 distinct progress points.
    """
    progress = np.asarray(progress, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(progress, kind="stable")
    progress, values = progress[order], values[order]
    span = progress[-1] - progress[0] if len(progress) else 0.0
    if span <= 0:
        return float("nan")
    area = np.sum((progress[1:] - progress[:-1]) * (values[1:] + values[:-1]) / 2.0)
    return float(area / span)


def forgetting(acc: np.ndarray, seen: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Per-class forgetting: best accuracy at an earlier eval point minus the final accuracy.

    Args:
        acc: [E, C] per-class accuracy at E eval points in stream order (last row = final);
            leave out the untrained eval, which no update produced. NaN = not measured.
        seen: optional [E, C] bool, class c seen by the stream at eval e; only such earlier points
            count. None counts every earlier point.

    Returns:
        (mean over classes with an earlier measured point, per-class [C] with NaN for the others).
        Values can be negative (the class improved by the end).
    """
    acc = np.asarray(acc, dtype=np.float64)
    earlier = acc[:-1].copy()
    if seen is not None:
        earlier[~np.asarray(seen, dtype=bool)[:-1]] = np.nan
    has_earlier = ~np.all(np.isnan(earlier), axis=0) if len(earlier) else np.zeros(acc.shape[1], bool)
    per_class = np.full(acc.shape[1], np.nan)
    if has_earlier.any():
        best = np.nanmax(earlier[:, has_earlier], axis=0)
        per_class[has_earlier] = best - acc[-1, has_earlier]
    valid = per_class[~np.isnan(per_class)]
    return (float(valid.mean()) if len(valid) else float("nan")), per_class


def seen_class_accuracy(per_class: np.ndarray, seen: np.ndarray) -> float:
    """Mean accuracy over the classes the stream has shown so far ([C] values, [C] bool; NaN if none)."""
    values = np.asarray(per_class, dtype=np.float64)[np.asarray(seen, dtype=bool)]
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def class_matrix(frame: pd.DataFrame, metric: str, num_classes: int,
                 protocol: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-class rows of `metric` as a matrix.

    Returns:
        (samples_seen [E] sorted, values [E, num_classes] with NaN where nothing was logged).
    """
    rows = frame[(frame["metric"] == metric) & (frame["class_id"] >= 0)]
    if protocol is not None:
        rows = rows[rows["protocol"] == protocol]
    rows = rows[rows["class_id"] < num_classes]
    table = rows.pivot_table(index="samples_seen", columns="class_id", values="value", aggfunc="last",
                             dropna=False)
    table = table.reindex(columns=range(num_classes)).sort_index()
    return table.index.to_numpy(dtype=np.int64), table.to_numpy(dtype=np.float64)


def seen_at(frame: pd.DataFrame, samples_seen: np.ndarray, num_classes: int) -> np.ndarray | None:
    """[E, C] bool: class c seen by the stream at eval point samples_seen[e] (None if not logged).

    Uses the latest `stream/classes_seen` rows at or before each point, so the loop may log them
    at any cadence.
    """
    points, counts = class_matrix(frame, CLASSES_SEEN, num_classes)
    if not len(points):
        return None
    ever = np.maximum.accumulate(np.nan_to_num(counts, nan=0.0) > 0, axis=0)
    where = np.searchsorted(points, np.asarray(samples_seen), side="right") - 1
    result = np.zeros((len(where), num_classes), dtype=bool)
    result[where >= 0] = ever[where[where >= 0]]
    return result


def num_classes_of(frame: pd.DataFrame, default: int | None = None) -> int:
    """C: `default` (run.json num_classes) when given, else 1 + the largest class_id logged."""
    if default:
        return int(default)
    return int(frame["class_id"].max()) + 1 if len(frame) else 0


def summarize(frame: pd.DataFrame, num_classes: int | None = None, fraction: float = 0.2) -> dict:
    """The report's scalars for one run, all in [0, 1] (forgetting in [-1, 1]); NaN where unknown.

    Returns:
        dict with protocol, final, at_fraction, untrained, auc, forgetting, seen_acc (mean over the
        trained eval points of the accuracy on the classes seen so far), evals (number of points) and
        linear (the last linear-probe top-1; NaN when the run logged none).
    """
    protocol = primary_protocol(frame)
    top1 = curve(frame, TOP1, protocol)
    x, y = top1["progress"].to_numpy(), top1["value"].to_numpy()
    out = {"protocol": protocol, "evals": len(top1), "final": final_value(y),
           "at_fraction": value_at_progress(x, y, fraction),
           "untrained": untrained_value(top1["samples_seen"].to_numpy(), y),
           "auc": area_under_curve(x, y) if len(y) else float("nan"),
           "linear": final_value(curve(frame, LINEAR_TOP1, primary_protocol(frame, LINEAR_TOP1))["value"])}
    out.update(_class_summaries(frame, num_classes_of(frame, num_classes), protocol))
    return out


def _class_summaries(frame: pd.DataFrame, num_classes: int, protocol: str | None) -> dict:
    points, acc = class_matrix(frame, CLASS_ACC, num_classes, protocol)
    trained = points > 0
    points, acc = points[trained], acc[trained]
    if not len(points):
        return {"forgetting": float("nan"), "seen_acc": float("nan")}
    seen = seen_at(frame, points, num_classes)
    forget, _ = forgetting(acc, seen)
    if seen is None:
        return {"forgetting": forget, "seen_acc": float("nan")}
    per_eval = [seen_class_accuracy(acc[e], seen[e]) for e in range(len(points))]
    finite = [v for v in per_eval if not np.isnan(v)]
    return {"forgetting": forget, "seen_acc": float(np.mean(finite)) if finite else float("nan")}
