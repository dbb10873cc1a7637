"""Joining per-sample columns (a timestamp, a video and frame index, a domain) from a CSV or Parquet
file into a prepared dataset's manifests, for `custom` streams that order by them.

The file's key column is matched against the manifest column of the same name (`key` by default),
or, for `id`, against the source id each sample was prepared from (an image folder's path relative
to the folder, read from the samples' `json` members). Both splits are joined (the test split when
there is one); a sample without a row in the file gets a missing value. Rows, their order and the
dataset's content identity (`content_sha256`, which covers only the identifying columns) are kept,
so streams and runs built before stay valid. The dataset and the file may be URIs (`s3://...`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from streamssl import fsio
from streamssl.errors import ConfigError

log = logging.getLogger(__name__)

RECORD_FIELD = "columns"  # dataset.json: {column: {from, key, matched, sha256}}
SOURCE_ID = "id"  # the --key that matches the samples' source ids
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# written by `prepare`: a joined column must never replace them
_OWN_COLUMNS = frozenset({"key", "index", "shard", "offset", "nbytes", "size", "ext", "width", "height", "label"})
_NAMED_UNMATCHED = 5  # unmatched keys named in the one-line warning
_ID_CHUNK = 10_000  # samples read at once when matching source ids


@dataclass
class _Split:
    folder: str
    table: pa.Table  # its manifest
    keys: list[str]  # each row's join key, as text


def read_columns_file(path: str | Path, key: str) -> pd.DataFrame:
    """The file's rows indexed by `key` (as text), every other column kept with its type.

    Raises:
        ConfigError: unreadable or unknown file type (`--from`), no such key column, missing or
            duplicate keys (`--key`), or no column besides the key (`--from`).
    """
    if not fsio.is_file(path):
        raise ConfigError(f"--from: {path} is not a file")
    frame = _read(path, key)
    name = fsio.name(path)
    if key not in frame.columns:
        raise ConfigError(f"--key: {name} has no column {key!r} (columns: {', '.join(map(str, frame.columns))})")
    if frame[key].isna().any():
        raise ConfigError(f"--key: {int(frame[key].isna().sum())} row(s) of {name} have no {key!r}")
    keys = frame[key].astype(str)
    twice = keys[keys.duplicated(keep=False)].unique()
    if len(twice):
        shown = ", ".join(repr(k) for k in twice[:_NAMED_UNMATCHED])
        raise ConfigError(f"--from: {len(twice)} key(s) appear more than once in {name} ({shown}); "
                          "a sample takes one value per column")
    frame = frame.drop(columns=[key]).set_axis(pd.Index(keys, name=key), axis=0)
    if frame.columns.empty:
        raise ConfigError(f"--from: {name} has no column besides the key {key!r}")
    return frame


def _read(path: str | Path, key: str) -> pd.DataFrame:
    suffix = Path(fsio.name(path)).suffix.lower()
    try:
        if suffix == ".csv":
            local = fsio.local_copy(path)  # pandas reads it twice (header, then rows): one download
            header = pd.read_csv(local, nrows=0).columns
            # keys stay text, so `0007` and `7` are not the same sample
            return pd.read_csv(local, dtype={key: str} if key in header else None)
        if suffix in (".parquet", ".pq"):
            return fsio.read_dataframe(path)
    except (OSError, ValueError, pa.ArrowException) as err:
        first = str(err).strip().splitlines()
        raise ConfigError(f"--from: {path} is unreadable ({first[0] if first else type(err).__name__})") from None
    raise ConfigError(f"--from: {fsio.name(path)} is neither .csv nor .parquet")


def check_new_columns(names: list[str], existing: list[str], replace: bool) -> None:
    """Refuse names that are not plain, that are the dataset's own, or that exist (unless `replace`)."""
    for name in names:
        if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name):
            raise ConfigError(f"--from: column {name!r} is not a plain name (letters, digits, _), which "
                              "stream.order_by needs")
        if name in _OWN_COLUMNS or name.endswith(("_label", "_name")):
            raise ConfigError(f"--from: column {name!r} is one of the dataset's own columns; rename it in the file")
    clash = [name for name in names if name in existing]
    if clash and not replace:
        raise ConfigError(f"--from: column(s) {', '.join(map(repr, clash))} already in the manifest; "
                          "pass --replace to overwrite them")


def join_columns(dataset_dir: str | Path, source: str | Path, *, key: str = "key", replace: bool = False) -> dict:
    """Join the columns of `source` into the manifests of a prepared dataset, by `key`.

    Args:
        dataset_dir: a `streamssl prepare` output folder (its test split, if any, is joined too).
        source: a .csv or .parquet file with one row per sample.
        key: the file's column naming the sample: matched against the manifest column of the same
            name, or (`id`) against the source ids the samples were prepared from.
        replace: overwrite manifest columns of the same names.

    Returns:
        dict(columns, key, rows (in the file), matched (file keys that found a sample),
        unmatched (count), unmatched_keys (the first few), samples (per split: total and those
        without a value)).

    Raises:
        ConfigError: see `read_columns_file` and `check_new_columns`; `DATASET_DIR` when it holds no
            prepared dataset; `--key` when the manifest has no such column.
    """
    from streamssl.scoring.manifest import dataset_lock

    folder = fsio.normpath(dataset_dir)
    if not fsio.is_file(fsio.join(folder, "dataset.json")) or not fsio.is_file(fsio.join(folder, "manifest.parquet")):
        raise ConfigError(f"DATASET_DIR: {folder} is not a prepared dataset (no dataset.json / manifest.parquet)")
    frame = read_columns_file(source, key)
    with dataset_lock(folder):  # a concurrent `score` or `columns` would drop this one's columns
        splits = [_load_split(split, key) for split in _split_folders(folder)]
        check_new_columns(list(frame.columns), splits[0].table.column_names, replace)
        found = set().union(*(set(s.keys) for s in splits))
        samples = {fsio.name(s.folder) if s.folder != folder else "train": _write_split(s, frame, source, key)
                   for s in splits}
    unmatched = [k for k in frame.index if k not in found]
    return {"columns": list(frame.columns), "key": key, "rows": len(frame), "matched": len(frame) - len(unmatched),
            "unmatched": len(unmatched), "unmatched_keys": unmatched[:_NAMED_UNMATCHED], "samples": samples}


def _split_folders(folder: str) -> list[str]:
    test = fsio.join(folder, "test")
    held = fsio.is_file(fsio.join(test, "manifest.parquet")) and fsio.is_file(fsio.join(test, "dataset.json"))
    return [folder] + ([test] if held else [])


def _load_split(folder: str, key: str) -> _Split:
    table = fsio.read_table(fsio.join(folder, "manifest.parquet"))
    if key in table.column_names:
        keys = [str(k) for k in table[key].to_pylist()]
    elif key == SOURCE_ID:
        keys = source_ids(folder, table.select(["key", "shard", "offset", "nbytes"]).to_pandas())
    else:
        raise ConfigError(f"--key: the manifest of {folder} has no column {key!r} (match on `key`, another "
                          f"manifest column, or `{SOURCE_ID}`: the id each sample was prepared from)")
    return _Split(folder, table, keys)


def source_ids(folder: str | Path, rows: pd.DataFrame) -> list[str]:
    """Each row's source id (the `id` in its `json` member), as text; '' where a sample has none."""
    from streamssl.ingest.reader import read_samples

    ids = []
    for start in range(0, len(rows), _ID_CHUNK):  # bounded memory: a chunk of samples' bytes at a time
        for sample in read_samples(folder, rows.iloc[start:start + _ID_CHUNK]):
            meta = json.loads(sample["json"]) if "json" in sample else {}
            ids.append(str(meta.get(SOURCE_ID, "")))
    return ids


def _write_split(split: _Split, frame: pd.DataFrame, source, key: str) -> dict:
    """Set the columns in one split's manifest and record them in its dataset.json."""
    from streamssl.ingest.dataset import write_info

    rows = pd.Index(split.keys)
    hit = rows.isin(frame.index)
    table = split.table
    for name in frame.columns:
        array = pa.Array.from_pandas(frame[name].reindex(rows).reset_index(drop=True))  # missing: null
        where = table.column_names.index(name) if name in table.column_names else None
        table = table.append_column(name, array) if where is None else table.set_column(where, name, array)
    with fsio.atomic_path(fsio.join(split.folder, "manifest.parquet")) as tmp:
        pq.write_table(table, tmp)
    info = fsio.read_json(fsio.join(split.folder, "dataset.json"))
    where = fsio.normpath(source) if fsio.is_uri(source) else str(Path(source).resolve())
    records = {name: {"from": where, "key": key, "matched": int(hit.sum()),
                      "sha256": _column_sha256(table[name])} for name in frame.columns}
    info[RECORD_FIELD] = {**(info.get(RECORD_FIELD) or {}), **records}
    write_info(split.folder, info)
    return {"total": len(rows), "without_value": int((~hit).sum())}


def _column_sha256(column: pa.ChunkedArray) -> str:
    hashed = pd.util.hash_pandas_object(column.to_pandas(), index=False).to_numpy()
    return hashlib.sha256(np.ascontiguousarray(hashed).tobytes()).hexdigest()


def columns_sha256(dataset_dir: str | Path, order_by: str | None) -> str | None:
    """One hash over the joined columns an order_by spec names (None if it names none), so a stream
    cache keyed on it is rebuilt when `streamssl columns` changes their values."""
    from streamssl.streams.plan import parse_order_keys

    if not order_by:
        return None
    info = fsio.read_json(fsio.join(dataset_dir, "dataset.json"))
    records = info.get(RECORD_FIELD) or {}
    hashes = [f"{name}:{records[name]['sha256']}" for name, _ in parse_order_keys(order_by) if name in records]
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest() if hashes else None


def format_summary(summary: dict, dataset_dir: str | Path) -> str:
    """What was joined, in one line."""
    parts = [f"{n['without_value']} of {n['total']} {split} samples without a value"
             for split, n in summary["samples"].items()]
    manifest = fsio.join(dataset_dir, "manifest.parquet")
    return (f"joined {', '.join(summary['columns'])} by {summary['key']!r}: {summary['matched']} of "
            f"{summary['rows']} rows matched a sample; {'; '.join(parts)} -> {manifest}")


def unmatched_line(summary: dict, source: str | Path) -> str | None:
    """The one-line warning naming the file's keys that match no sample (None when all matched)."""
    if not summary["unmatched"]:
        return None
    shown = ", ".join(repr(k) for k in summary["unmatched_keys"])
    more = f" and {summary['unmatched'] - len(summary['unmatched_keys'])} more" if summary["unmatched"] > len(
        summary["unmatched_keys"]) else ""
    return (f"warning: {summary['unmatched']} of {summary['rows']} keys in {fsio.name(source)} match no sample "
            f"({summary['key']!r}): {shown}{more}")
