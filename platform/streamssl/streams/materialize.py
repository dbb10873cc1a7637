"""Materializing a plan: re-shard a prepared dataset into stream-ordered WebDataset shards.

Output shard j holds plan positions [j * shard_size, (j + 1) * shard_size); each is written by one
Ray Data task that reads its samples by manifest offset (random access, no scan, no decode), so
the job is parallel across shards while the shards' contents stay in stream order. Reading the
stream later is then a sequential scan (see `reader`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from streamssl import fsio
from streamssl.errors import ConfigError, DataError
from streamssl.streams.tario import ShardWriter, split_samples

log = logging.getLogger(__name__)

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")
SHARD_PATTERN = "stream-{:06d}.tar"
_PLAN_FILE = ".plan.parquet"  # per-shard inputs for the tasks (one row group per output shard)
_RESULT_SCHEMA = pa.schema([("pos", pa.int64()), ("offset", pa.int64()), ("nbytes", pa.int64()),
                            ("reason", pa.string()), ("fatal", pa.bool_())])


def planned_table(manifest: pd.DataFrame, plan: np.ndarray, root: Path, label_column: str) -> pa.Table:
    """The plan's manifest rows in stream order, with what the shard writers need.

    Columns: pos, key, label (the stream's label), dataset_label (the manifest's `label`), the
    manifest's other integer label columns, src (absolute source shard), src_offset, src_nbytes, ext.
    """
    rows = manifest.iloc[plan]
    extra = [c for c in manifest.columns if c.endswith("_label") and c != "dataset_label"
             and pd.api.types.is_integer_dtype(manifest[c])]
    columns = {
        "pos": np.arange(len(plan), dtype=np.int64),
        "key": rows["key"].astype(str).to_numpy(),
        "label": rows[label_column].to_numpy(np.int64),
        "dataset_label": rows["label"].to_numpy(np.int64),
        **{c: rows[c].to_numpy(np.int64) for c in extra},
        "src": pa.DictionaryArray.from_arrays(*_codes(rows["shard"], root)),
        "src_offset": rows["offset"].to_numpy(np.int64),
        "src_nbytes": rows["nbytes"].to_numpy(np.int64),
        "ext": rows["ext"].astype(str).to_numpy(),
    }
    return pa.table(columns)


def _codes(shards: pd.Series, root: Path) -> tuple[np.ndarray, list[str]]:
    codes, names = pd.factorize(shards, sort=False)
    return codes.astype(np.int32), [fsio.join(root, name) for name in names]


def write_shard(plan_path: str, out_dir: str, shard: int) -> pa.Table:
    """Write output shard `shard`; never raises (errors come back as rows with a reason).

    Returns:
        One row per planned sample: pos, offset and nbytes in the new shard (-1 if skipped),
        reason ("" if written), fatal (the shard itself could not be written).
    """
    try:
        rows = fsio.parquet_file(plan_path).read_row_group(shard).to_pydict()
        return _write_rows(rows, fsio.join(out_dir, SHARD_PATTERN.format(shard)))
    except Exception as err:  # noqa: BLE001 (reported in one line by the driver)
        return pa.table({"pos": [-1], "offset": [-1], "nbytes": [-1],
                         "reason": [f"{SHARD_PATTERN.format(shard)}: {type(err).__name__}: {err}"],
                         "fatal": [True]}, schema=_RESULT_SCHEMA)


def _write_rows(rows: dict[str, list], path: str) -> pa.Table:
    n = len(rows["pos"])
    offset, nbytes, reason = np.full(n, -1, np.int64), np.full(n, -1, np.int64), [""] * n
    label_names = [c for c in rows if c == "dataset_label" or c.endswith("_label")]
    files: dict[str, object] = {}
    writer = ShardWriter(path)  # path + ".tmp" until it is complete
    try:
        for i in range(n):
            try:
                image_ext, data = _read_image(files, rows, i)
            except (OSError, ValueError) as err:
                reason[i] = str(err)
                continue
            meta = {"key": rows["key"][i], "pos": rows["pos"][i], **{c: rows[c][i] for c in label_names}}
            offset[i], nbytes[i] = writer.write(f"{rows['pos'][i]:010d}", {
                image_ext: data, "cls": str(rows["label"][i]).encode(), "json": json.dumps(meta).encode()})
    except BaseException:
        writer.abort()
        raise
    finally:
        for f in files.values():
            f.close()
    writer.close()
    return pa.table({"pos": rows["pos"], "offset": offset, "nbytes": nbytes, "reason": reason,
                     "fatal": np.zeros(n, bool)}, schema=_RESULT_SCHEMA)


def _read_image(files: dict, rows: dict[str, list], i: int) -> tuple[str, bytes]:
    """The encoded image of planned row i, read by offset and checked against the manifest."""
    src, key = rows["src"][i], rows["key"][i]
    if src not in files:
        files[src] = fsio.open_input(src)  # closed by the caller
    f = files[src]
    f.seek(rows["src_offset"][i])
    want = rows["src_nbytes"][i]
    buf = f.read(want)
    if len(buf) != want:
        raise ValueError(f"truncated: {len(buf)} of {want} bytes")
    samples = split_samples(buf)
    if len(samples) != 1 or samples[0][0] != key:
        found = ", ".join(k for k, _ in samples) or "nothing"
        raise ValueError(f"found {found} at the manifest's offset (manifest out of date?)")
    members = samples[0][1]
    ext = rows["ext"][i] if rows["ext"][i] in members else next((e for e in IMAGE_EXTS if e in members), None)
    if ext is None:
        raise ValueError("no image member")
    return ext, members[ext]


def materialize(table: pa.Table, out_dir: str, *, shard_size: int, strict: bool,
                progress: bool = True) -> tuple[pa.Table, list[dict]]:
    """Write the stream shards of a `planned_table` with one Ray Data task per shard.

    Args:
        table: `planned_table(...)`, L rows in stream order.
        out_dir: the stream folder (created).
        shard_size: samples per output shard.
        strict: stop at the first bad sample with a DataError.
        progress: show a progress bar (on a terminal).

    Returns:
        (index, skipped): the index.parquet table of the written samples, and one
        {shard, key, pos, reason} per skipped sample.

    Raises:
        DataError: a bad sample under `strict`, or an output shard that could not be written.
    """
    from tqdm import tqdm

    from streamssl.streams.reader import ordered_map

    if shard_size < 1:
        raise ConfigError(f"--shard-size: {shard_size} must be >= 1")
    fsio.makedirs(out_dir)
    remove_outputs(out_dir)
    plan_path = fsio.join(out_dir, _PLAN_FILE)
    with fsio.atomic_path(plan_path) as tmp:
        pq.write_table(table, tmp, row_group_size=shard_size)
    num_shards = -(-table.num_rows // shard_size)
    results = []
    try:
        with tqdm(total=table.num_rows, desc="stream", unit="img", disable=not progress or None,
                  file=sys.stderr) as bar:
            for result in ordered_map(partial(write_shard, plan_path, out_dir), num_shards):
                _check(result, table, strict)
                results.append(result)
                bar.update(result.num_rows)
    finally:
        fsio.remove(plan_path)
    return _index(table, pa.concat_tables(results), shard_size)


def remove_outputs(out_dir: str) -> None:
    """Clear an earlier stream's files from `out_dir`; refuse a prepared dataset's folder."""
    if fsio.exists(fsio.join(out_dir, "dataset.json")):
        raise ConfigError(f"--out: {out_dir} holds a prepared dataset; choose another folder")
    for name in fsio.listdir(out_dir):
        if (name.startswith("stream-") and name.endswith((".tar", ".tar.tmp"))) or name in (
                "index.parquet", "stream.json", _PLAN_FILE):
            fsio.remove(fsio.join(out_dir, name))


def _check(result: pa.Table, table: pa.Table, strict: bool) -> None:
    fatal = result["fatal"].to_numpy(zero_copy_only=False)
    if fatal.any():
        raise DataError(f"writing the stream failed: {result['reason'][int(np.argmax(fatal))]}")
    bad = np.flatnonzero(result["offset"].to_numpy() < 0)
    if strict and len(bad):
        skip = _skip_records(result.take(bad[:1]), table)[0]
        raise DataError(f"{skip['shard']}: sample {skip['key']!r}: {skip['reason']} (--strict)")


def _skip_records(bad: pa.Table, table: pa.Table) -> list[dict]:
    pos = bad["pos"].to_numpy()
    src = table["src"].take(pa.array(pos)).cast(pa.string()).to_pylist()
    keys = table["key"].take(pa.array(pos)).to_pylist()
    return [{"shard": os.path.basename(s), "key": k, "pos": int(p), "reason": r}
            for s, k, p, r in zip(src, keys, pos, bad["reason"].to_pylist())]


def _index(table: pa.Table, results: pa.Table, shard_size: int) -> tuple[pa.Table, list[dict]]:
    ok = results["offset"].to_numpy() >= 0
    skipped = _skip_records(results.filter(pa.array(~ok)), table)
    pos = table["pos"].to_numpy()[ok]
    names = [SHARD_PATTERN.format(j) for j in range(-(-table.num_rows // shard_size))]
    shard = pa.DictionaryArray.from_arrays(pa.array((pos // shard_size).astype(np.int32)), names)
    keep = [c for c in table.column_names if not c.startswith("src") and c != "ext"]
    index = table.select(keep).filter(pa.array(ok))
    index = index.append_column("shard", shard)
    for column in ("offset", "nbytes"):
        index = index.append_column(column, results[column].filter(pa.array(ok)))
    if skipped:
        log.warning("%d bad samples skipped (first: %s key %r: %s); listed in stream.json",
                    len(skipped), skipped[0]["shard"], skipped[0]["key"], skipped[0]["reason"])
    return index, skipped
