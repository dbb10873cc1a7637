"""Writing a split's `manifest.parquet` and `dataset.json` (docs/formats.md, "Prepared dataset"),
and a prepared dataset's identity: the content hash of its manifest."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from streamssl import fsio
from streamssl.errors import DataError
from streamssl.ingest.reader import label_columns

log = logging.getLogger("streamssl.ingest")

# Columns every source produces for each valid sample (label columns come on top).
SAMPLE_COLUMNS = {
    "key": pa.string(),
    "shard": pa.string(),
    "offset": pa.int64(),
    "nbytes": pa.int64(),
    "size": pa.int64(),
    "ext": pa.string(),
    "width": pa.int32(),
    "height": pa.int32(),
}
# What a per-file task (imagefolder, wds) returns: one entry per sample or skip.
TASK_COLUMNS = {**SAMPLE_COLUMNS, "label": pa.int64(), "reason": pa.string()}
MAX_LISTED_SKIPS = 20  # in the warning; dataset.json lists them all


def name_column(label_column: str) -> str:
    """`label` -> `label_name`, `coarse_label` -> `coarse_label_name`."""
    return f"{label_column}_name"


def skip_record(shard: str, key: str | None, reason: str) -> dict:
    """One entry of dataset.json's `skipped` list (key None: the problem is not one sample's)."""
    return {
        "shard": str(shard),
        "key": None if key is None or pd.isna(key) else str(key),
        "reason": str(reason),
    }


def raise_if_strict(strict: bool, skipped: list[dict]) -> None:
    """Under --strict the first bad sample stops everything, naming its shard."""
    if strict and skipped:
        s = skipped[0]
        where = f"{s['shard']}" + (f", key {s['key']}" if s["key"] else "")
        raise DataError(f"{where}: {s['reason']} (--strict)")


def warn_skipped(skipped: list[dict]) -> None:
    """ONE warning naming every skipped sample (up to MAX_LISTED_SKIPS, then a count)."""
    if not skipped:
        return
    lines = [f"  {s['shard']} {s['key'] or '-'}: {s['reason']}" for s in skipped[:MAX_LISTED_SKIPS]]
    if len(skipped) > MAX_LISTED_SKIPS:
        lines.append(f"  ... and {len(skipped) - MAX_LISTED_SKIPS} more (all in dataset.json 'skipped')")
    log.warning("skipped %d bad sample(s) (shard key: reason):\n%s", len(skipped), "\n".join(lines))


def _manifest_table(rows: pd.DataFrame, label_names: dict[str, list[str]]) -> pa.Table:
    columns = {
        c: pa.array(rows[c].to_numpy(), SAMPLE_COLUMNS[c])
        for c in ("key", "shard", "offset", "nbytes", "size", "ext")
    }
    columns["index"] = pa.array(np.arange(len(rows), dtype=np.int64))
    for col, names in label_names.items():
        labels = rows[col].to_numpy(np.int64)
        columns[col] = pa.array(labels)
        columns[name_column(col)] = pa.array(np.asarray(names, dtype=object)[labels], pa.string())
    columns["width"] = pa.array(rows["width"].to_numpy(np.int32))
    columns["height"] = pa.array(rows["height"].to_numpy(np.int32))
    order = ["key", "index", "shard", "offset", "nbytes", "size", "ext"]
    order += [c for col in label_names for c in (col, name_column(col))] + ["width", "height"]
    return pa.table({c: columns[c] for c in order})


def label_summary(labels: np.ndarray, names: list[str]) -> dict:
    """{num_classes, class_names, class_counts} for one label column."""
    counts = np.bincount(labels, minlength=len(names)) if len(labels) else np.zeros(len(names), int)
    return {"num_classes": len(names), "class_names": list(names), "class_counts": counts.tolist()}


def write_dataset(
    out_dir: Path,
    rows: pd.DataFrame,
    *,
    label_names: dict[str, list[str]],
    source: str,
    skipped: list[dict],
    shard_root: str = ".",
    mean: list[float] | None = None,
    std: list[float] | None = None,
    extra: dict | None = None,
) -> dict:
    """Write manifest.parquet, then dataset.json (last, so a crashed run has none), and return it.

    Args:
        out_dir: the split's folder.
        rows: valid samples in source order, with SAMPLE_COLUMNS and one int column per label
            column named in `label_names` ("label" first).
        label_names: label column -> class names indexed by label id.
        source: source name.
        skipped: skip records of this split.
        shard_root: "." or the absolute folder the `shard` paths are relative to.
        mean, std: per-channel statistics on [0, 1], 3 values each, or None.
        extra: further dataset.json fields.
    """
    rows = rows.reset_index(drop=True)
    if not len(rows):
        s = skipped[0] if skipped else None
        first = f"; first: {s['shard']} {s['key'] or '-'}: {s['reason']}" if s else ""
        raise DataError(f"{source}: no valid samples ({len(skipped)} skipped{first})")
    for col, names in label_names.items():
        bad = rows[col][(rows[col] < 0) | (rows[col] >= len(names))]
        if len(bad):
            raise DataError(f"{source}: label {int(bad.iloc[0])} outside 0..{len(names) - 1} in '{col}'")
    table = _manifest_table(rows, label_names)
    with fsio.atomic_path(out_dir / "manifest.parquet") as tmp:
        pq.write_table(table, tmp)
    columns = {col: label_summary(rows[col].to_numpy(np.int64), names) for col, names in label_names.items()}
    exts = sorted(set(rows["ext"]))
    info = {
        "num_samples": len(rows),
        **columns["label"],
        "source": source,
        "skipped": skipped,
        "num_shards": int(rows["shard"].nunique()),
        "shard_root": shard_root,
        "label_columns": columns,
        "mean": mean,
        "std": std,
        "image_ext": exts[0] if len(exts) == 1 else "mixed" if exts else None,
        "content_sha256": content_sha256(table, list(label_names)),
        **(extra or {}),
    }
    # One top-level field per line, values compact: readable even with 21,841 class names.
    write_info(out_dir, info)
    return info


def write_info(out_dir: Path, info: dict) -> None:
    """dataset.json: one top-level field per line, values compact (readable with 21,841 class names)."""
    lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in info.items()]
    fsio.write_text(fsio.join(out_dir, "dataset.json"), "{\n" + ",\n".join(lines) + "\n}\n")


def content_sha256(manifest: pa.Table, label_columns: list[str]) -> str:
    """SHA-256 of what identifies a split's samples: keys, source positions, shards and byte ranges,
    image sizes and extensions, and every label column with its names, in manifest order.

    Score columns (added later by `streamssl score`) are left out, so scoring keeps the identity.
    The same input prepared again gives the same hash (shards and manifests are deterministic).
    """
    names = ["key", "index", "shard", "offset", "nbytes", "size", "ext", "width", "height"]
    names += [c for col in label_columns for c in (col, name_column(col))]
    digest = hashlib.sha256()
    for name in names:
        if name not in manifest.column_names:
            continue
        column = manifest[name].combine_chunks()
        digest.update(f"{name}:{len(column)}:".encode())
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            digest.update("\0".join(column.to_pylist()).encode())
        else:
            digest.update(np.ascontiguousarray(column.to_numpy(), dtype="<i8").tobytes())
    return digest.hexdigest()


def split_sha256(split_dir: Path) -> str:
    """A split's recorded content hash, computed from its manifest for datasets prepared before it."""
    info = fsio.read_json(fsio.join(split_dir, "dataset.json"))
    if info.get("content_sha256"):
        return info["content_sha256"]
    return content_sha256(fsio.read_table(fsio.join(split_dir, "manifest.parquet")), list(label_columns(info)))


def dataset_identity(dataset_dir: str | Path) -> dict:
    """{"name", "sha256"} of a prepared dataset: its dataset.json `name` (else the folder's name)
    and the train split's content hash, combined with the test split's when it has one."""
    folder = fsio.absolute(dataset_dir)
    info = fsio.read_json(fsio.join(folder, "dataset.json"))
    sha = split_sha256(folder)
    if fsio.is_file(fsio.join(folder, "test", "dataset.json")):
        sha = hashlib.sha256(f"train:{sha}\ntest:{split_sha256(fsio.join(folder, 'test'))}\n".encode()).hexdigest()
    return {"name": str(info.get("name") or fsio.name(folder)), "sha256": sha}


def collect_rows(frames: Iterable[pd.DataFrame], strict: bool) -> tuple[pd.DataFrame, list[dict]]:
    """Split task results (in source order) into valid rows and skip records.

    Rows with a non-empty `reason` are skips. A key seen before (in an earlier shard) is a
    duplicate: the first one is kept. Under `strict` the first problem raises DataError.
    """
    valid, skipped = [], []
    for frame in frames:
        bad = frame["reason"].fillna("") != ""
        skipped += [
            skip_record(s, k, r)
            for s, k, r in frame.loc[bad, ["shard", "key", "reason"]].itertuples(index=False)
        ]
        raise_if_strict(strict, skipped)
        valid.append(frame[~bad])
    rows = pd.concat(valid, ignore_index=True) if valid else pd.DataFrame(columns=list(SAMPLE_COLUMNS))
    dup = rows["key"].duplicated(keep="first")
    if dup.any():
        first = rows.drop_duplicates("key").set_index("key")["shard"]
        skipped += [
            skip_record(s, k, f"duplicate key (first in {first[k]})")
            for s, k in rows.loc[dup, ["shard", "key"]].itertuples(index=False)
        ]
        raise_if_strict(strict, skipped)
        rows = rows[~dup].reset_index(drop=True)
    return rows, skipped
