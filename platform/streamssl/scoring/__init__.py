"""Per-sample difficulty scores written into a prepared dataset's manifest (curriculum streams).

Public API (docs/formats.md, "Prepared dataset", score columns):
    SCORERS: name -> Scorer (`loss`, `class-distance`)
    score_dataset(dataset_dir, by, column=None, *, seed=0, threads=None, force=False,
                  label_column="label", progress=True, **params) -> dict
    ensure_scored(dataset_dir, order_by, *, progress=True) -> str | None

A `custom` stream then orders by the column (`order_by: difficulty_loss`, or `-difficulty_loss`
for hard to easy).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamssl import fsio
from streamssl.errors import ConfigError


@dataclass(frozen=True)
class Scorer:
    """A registered scoring method: `fn(dataset_dir, manifest, labels, info, *, params, seed,
    progress) -> (N,) float32`, its parameter dataclass and its default column name."""

    fn: Callable
    params_type: type
    column: str


def _registry() -> dict[str, Scorer]:
    from streamssl.scoring.class_distance import DistanceParams, score_class_distance
    from streamssl.scoring.loss import LossParams, score_loss

    return {"loss": Scorer(score_loss, LossParams, "difficulty_loss"),
            "class-distance": Scorer(score_class_distance, DistanceParams, "difficulty_class_distance")}


SCORER_NAMES = ("loss", "class-distance")  # without importing torch (the CLI parser stays cheap)
DEFAULT_COLUMNS = {"difficulty_loss": "loss", "difficulty_class_distance": "class-distance"}


def score_dataset(dataset_dir: str | Path, by: str, column: str | None = None, *, seed: int = 0,
                  threads: int | None = None, force: bool = False, label_column: str = "label",
                  progress: bool = True, **params) -> dict:
    """Score every sample of a prepared dataset and store the scores as a manifest column.

    Args:
        dataset_dir: a `streamssl prepare` output folder (its train split; DIR/test is untouched).
        by: scorer name, a key of SCORER_NAMES.
        column: manifest column to write (default `difficulty_loss` / `difficulty_class_distance`).
        seed: seeds every random draw of the scorer.
        threads: torch intra-op threads while scoring (None: torch's default).
        force: allow overwriting an existing column that is not a recorded score.
        label_column: the manifest label column that defines the classes.
        progress: tqdm bars.
        **params: scorer settings (fields of LossParams / DistanceParams).

    Returns:
        Summary: column, method, params, seed, label_column, sha256 (of the float32 scores),
        num_samples, min / median / mean / max, easiest / hardest class (by median score), seconds.

    Raises:
        ConfigError: not a prepared dataset, unknown scorer, parameter or label column, fewer
            than 2 classes, or a column name that would overwrite the dataset's own data.
    """
    from streamssl.ingest.reader import label_info, load_dataset_info, read_manifest
    from streamssl.scoring.images import NumThreads
    from streamssl.scoring.manifest import check_column_name, dataset_lock, write_score

    start = time.perf_counter()
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads: must be None or an integer >= 1, got {threads!r}")
    scorer, params = _resolve(by, params)
    if not fsio.is_dir(dataset_dir):
        raise ConfigError(f"DATASET_DIR: {dataset_dir} is not a folder")
    info = load_dataset_info(dataset_dir)
    column = column or scorer.column
    with dataset_lock(dataset_dir):
        manifest = read_manifest(dataset_dir)
        check_column_name(column, list(manifest.columns), info.get("scores") or {}, force)
        labels = _labels(manifest, label_column)
        with NumThreads(threads):
            values = scorer.fn(dataset_dir, manifest, labels, info, params=params, seed=seed, progress=progress)
        record = {"method": by, "params": dataclasses.asdict(params), "seed": seed,
                  "label_column": label_column, "sha256": hashlib.sha256(values.astype("<f4").tobytes()).hexdigest()}
        write_score(dataset_dir, column, values, record)
    names = (label_info(info, label_column) or {}).get("class_names")
    return {"column": column, **record, **_stats(values, labels, names),
            "seconds": time.perf_counter() - start}


def _resolve(by: str, params: dict):
    """(Scorer, validated params dataclass) of a scorer name and keyword settings."""
    if by not in SCORER_NAMES:
        raise ConfigError(f"--by: unknown scoring method {by!r} (choose from {', '.join(SCORER_NAMES)})")
    scorer = _registry()[by]
    fields = {f.name: f.type for f in dataclasses.fields(scorer.params_type)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ConfigError(f"{by}: unknown setting {unknown[0]!r} (settings: {', '.join(fields)})")
    resolved = scorer.params_type(**{k: v for k, v in params.items() if v is not None})
    defaults = dataclasses.asdict(scorer.params_type())
    for name, value in dataclasses.asdict(resolved).items():
        kind = (int,) if isinstance(defaults[name], int) else (int, float)
        low = _MINIMUM.get(name)
        if isinstance(value, bool) or (low is not None and not (isinstance(value, kind) and value >= low)):
            what = "an integer" if kind == (int,) else "a number"
            raise ConfigError(f"{by}: {name} must be {what} >= {low}, got {value!r}")
    return scorer, resolved


# cnn4 max-pools 3 times, so inputs below 8 pixels vanish; one fold would score with a network
# trained on itself; BatchNorm needs 2 samples per batch
_MINIMUM = {"folds": 2, "epochs": 1, "train_samples": 2, "batch_size": 2, "lr": 0.0, "weight_decay": 0.0,
            "image_size": 8, "size": 1, "cache_bytes": 0}


def _labels(manifest, label_column: str) -> np.ndarray:
    import pandas as pd

    if label_column not in manifest.columns or not pd.api.types.is_integer_dtype(manifest[label_column]):
        raise ConfigError(f"--label-column: {label_column!r} is not an integer label column of the manifest")
    labels = np.array(manifest[label_column], dtype=np.int64)  # writable: torch.from_numpy shares it
    if labels.min() < 0:
        raise ConfigError(f"--label-column: {label_column!r} holds negative class ids")
    if len(np.unique(labels)) < 2:
        raise ConfigError(f"{label_column}: the dataset has one class; a difficulty needs classes to compare "
                          "(distance to the class mean or a classifier's loss)")
    return labels


def _stats(values: np.ndarray, labels: np.ndarray, names: list | None) -> dict:
    """Overall quantiles and the classes with the lowest / highest median score (medians: a few
    confidently misclassified samples must not make a class look hard)."""
    counts = np.bincount(labels)
    order = np.lexsort((values, labels))  # by class, then by score
    present = np.flatnonzero(counts)
    starts = np.cumsum(counts) - counts
    medians = values[order[starts[present] + (counts[present] - 1) // 2]]  # lower median per class
    easy, hard = int(present[np.argmin(medians)]), int(present[np.argmax(medians)])

    def entry(c: int) -> dict:
        name = str(names[c]) if names and c < len(names) else str(c)
        return {"label": c, "name": name, "median": float(medians[np.searchsorted(present, c)])}

    return {"num_samples": len(values), "min": float(values.min()), "median": float(np.median(values)),
            "mean": float(values.mean()), "max": float(values.max()),
            "easiest_class": entry(easy), "hardest_class": entry(hard)}


def ensure_scored(dataset_dir: str | Path, order_by: str | None, *, progress: bool = True) -> str | None:
    """Score a dataset on first use when a stream orders by a default score column it lacks.

    Args:
        dataset_dir: the prepared dataset folder.
        order_by: the stream's order_by (`column` or `-column`), or None.
        progress: tqdm bars.

    Returns:
        The column's sha256 when it is a recorded score (a stream cache can key on it, so
        re-scoring rebuilds streams ordered by it), else None. Unknown columns are left to the
        stream builder to report.
    """
    from streamssl.ingest import load_dataset_info

    if not order_by:
        return None
    column = order_by[1:] if order_by.startswith("-") else order_by
    present = fsio.parquet_columns(fsio.join(dataset_dir, "manifest.parquet"))
    if column not in present and column in DEFAULT_COLUMNS:
        return score_dataset(dataset_dir, DEFAULT_COLUMNS[column], progress=progress)["sha256"]
    record = (load_dataset_info(dataset_dir).get("scores") or {}).get(column)
    return record["sha256"] if record else None


__all__ = ["DEFAULT_COLUMNS", "SCORER_NAMES", "Scorer", "ensure_scored", "score_dataset"]
