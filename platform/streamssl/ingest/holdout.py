"""The test split of a prepared dataset: the source's own, or a class-stratified held-out part.

A source without a test split (an image folder without `--test-path`, a wds set, ...) would
otherwise be evaluated on images of its training split, which the stream trains on. `prepare`
therefore moves a deterministic, class-stratified fraction of the samples into DIR/test: per class
round(fraction * n) samples (rounding halves up), chosen by a seeded random draw. The shards are
not rewritten: DIR/test/manifest.parquet lists the held-out samples inside the train split's
shards (its `shard_root` is ".." or the wds input folder), and DIR/manifest.parquet, which every
stream is built from, no longer lists them. dataset.json's `test_split` records how the test split
was made (docs/formats.md).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from streamssl import fsio
from streamssl.errors import ConfigError
from streamssl.ingest.dataset import SAMPLE_COLUMNS, write_dataset, write_info
from streamssl.ingest.reader import label_columns, load_dataset_info, read_manifest

DEFAULT_TEST_FRACTION = 1 / 6
HOLDOUT_SEED = 0  # fixed: the held-out split must not move with a run's seed
# fields write_dataset sets itself
_STANDARD = ("num_samples", "num_classes", "class_names", "class_counts", "source", "skipped", "num_shards",
             "shard_root", "label_columns", "mean", "std", "image_ext", "content_sha256")


def parse_test_fraction(value) -> float:
    """`--test-fraction`: a number or a ratio such as "1/6", strictly between 0 and 1."""
    try:
        fraction = float(Fraction(str(value).strip()))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"--test-fraction: a number or a ratio such as 1/6, got {value!r}") from None
    if not 0 < fraction < 1:
        raise ConfigError(f"--test-fraction: must be strictly between 0 and 1, got {value!r}")
    return fraction


def fraction_text(fraction: float) -> str:
    """0.1666... -> "1/6", 0.2 -> "1/5", 0.15 -> "3/20" (the protocol strings' form)."""
    ratio = Fraction(fraction).limit_denominator(1000)
    return f"{ratio.numerator}/{ratio.denominator}"


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int = HOLDOUT_SEED) -> np.ndarray:
    """Boolean mask [N] of the held-out samples: per class floor(fraction * n_c + 0.5), drawn at random.

    Vectorized (a lexsort), so 13M samples over 21,841 classes take seconds, not a loop per class.
    """
    labels = np.asarray(labels, dtype=np.int64)
    mask = np.zeros(len(labels), dtype=bool)
    if not len(labels):
        return mask
    draw = np.random.default_rng(seed).random(len(labels))
    order = np.lexsort((draw, labels))  # by class, then by the draw within the class
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    counts = np.diff(np.r_[starts, len(labels)])
    rank = np.arange(len(labels)) - np.repeat(starts, counts)
    take = np.floor(fraction * counts + 0.5).astype(np.int64)
    mask[order[rank < np.repeat(take, counts)]] = True
    return mask


def finish_test_split(out: Path, info: dict, fraction: float | None) -> dict:
    """Record the source's test split, or hold one out of the train split; returns the train info."""
    if info.get("test"):
        test = load_dataset_info(out / "test")
        info = {**info, "test_split": {"kind": "source", "num_train": info["num_samples"],
                                       "num_test": test["num_samples"]}}
        write_info(out, info)
        return info
    return hold_out_test(out, info, DEFAULT_TEST_FRACTION if fraction is None else fraction)


def hold_out_test(out: Path, info: dict, fraction: float, seed: int = HOLDOUT_SEED) -> dict:
    """Move a stratified `fraction` of the train split's manifest rows into out/test."""
    manifest = read_manifest(out)
    held = stratified_holdout(manifest["label"].to_numpy(), fraction, seed)
    record = {"kind": "held-out", "fraction": fraction, "fraction_text": fraction_text(fraction), "seed": seed,
              "stratified_by": "label", "num_train": int((~held).sum()), "num_test": int(held.sum())}
    if not held.any():  # evaluation warns when it falls back to training images
        reason = f"no class has enough samples to hold out {record['fraction_text']} of them"
        info = {**info, "test_split": {**record, "kind": "none", "num_train": len(manifest), "reason": reason}}
        write_info(out, info)
        return info
    fsio.remove(fsio.join(out, "dataset.json"))  # a prepare stopped before the end leaves no dataset, not a wrong one
    root = ".." if info.get("shard_root", ".") == "." else info["shard_root"]
    fsio.makedirs(fsio.join(out, "test"))
    _write_split(out / "test", manifest[held], info, root, {"split": "test", "held_out": record},
                 source=f"{info['source']}_test")
    extra = {k: v for k, v in info.items() if k not in _STANDARD}
    return _write_split(out, manifest[~held], info, info.get("shard_root", "."),
                        {**extra, "test": "test", "test_split": record}, source=info["source"])


def _write_split(folder: Path, rows: pd.DataFrame, info: dict, root: str, extra: dict, source: str) -> dict:
    label_names = {col: summary["class_names"] for col, summary in label_columns(info).items()}
    keep = [c for c in SAMPLE_COLUMNS if c in rows.columns] + list(label_names)
    skipped = info["skipped"] if extra.get("split") != "test" else []
    return write_dataset(folder, rows[keep], label_names=label_names, source=source, skipped=skipped,
                         shard_root=root, mean=info.get("mean"), std=info.get("std"), extra=extra)


def origin_of_test(dataset_dir: str | Path) -> str:
    """Where a dataset's test images come from, for protocol strings: `source-split`,
    `held-out-1/6`, or `train-split` when it has no test split (training images)."""
    dataset_dir = Path(dataset_dir)
    if not fsio.exists(fsio.join(dataset_dir, "test", "dataset.json")):
        return "train-split"
    record = load_dataset_info(dataset_dir).get("test_split") or {"kind": "source"}
    if record.get("kind") == "held-out":
        return f"held-out-{record.get('fraction_text') or fraction_text(record['fraction'])}"
    return "source-split"
