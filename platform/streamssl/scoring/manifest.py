"""Adding a score column to a prepared dataset: manifest.parquet and dataset.json, atomically.

Each file is replaced atomically (`streamssl.fsio`), so a reader sees the old or the new file,
never half of one; a lock file serializes concurrent scorers of one dataset (each rewrites the
whole manifest, so they would otherwise drop each other's columns). Rows, their order and every
other column are kept, so streams built from the dataset (which point at shard offsets, not at
the manifest) stay valid.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamssl import fsio
from streamssl.errors import ConfigError
from streamssl.ingest.dataset import write_info

# Written by `streamssl prepare`; a score must never replace them.
CORE_COLUMNS = frozenset({"key", "index", "shard", "offset", "nbytes", "size", "ext", "width", "height"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_column_name(column: str, existing: list[str], scores: dict, force: bool) -> None:
    """Refuse names that would clobber the dataset's own columns.

    A column recorded in dataset.json's `scores` is overwritten freely; any other existing
    column only with `force`, and the core and label columns never.
    """
    if not _NAME.fullmatch(column):
        raise ConfigError(f"--column: {column!r} is not a plain name (letters, digits, _; "
                          "a leading '-' is how order_by asks for descending order)")
    if column in CORE_COLUMNS or column == "label" or column.endswith(("_label", "_name")):
        raise ConfigError(f"--column: {column!r} is one of the dataset's own columns; choose another name")
    if column in existing and column not in scores and not force:
        raise ConfigError(f"--column: {column!r} already exists and is not a recorded score; "
                          "pass --force to overwrite it")


def lock_path(dataset_dir: str | Path) -> str:
    """DIR/.score.lock; for a URI a file under `fsio.cache_dir`, named by the URI (an object store
    has no locks: this serializes the scorers of one machine, which is what shares the cache)."""
    if not fsio.is_uri(dataset_dir):
        return fsio.join(dataset_dir, ".score.lock")
    digest = hashlib.sha256(fsio.normpath(dataset_dir).encode()).hexdigest()[:16]
    return fsio.join(fsio.cache_dir("locks"), f"{digest}.score.lock")


@contextmanager
def dataset_lock(dataset_dir: str | Path):
    """An exclusive advisory lock (`lock_path`) for the read-modify-write of the manifest."""
    with open(lock_path(dataset_dir), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_score(dataset_dir: str | Path, column: str, values: np.ndarray, record: dict) -> None:
    """Set manifest column `column` to `values` (float32, one per row) and record it in dataset.json.

    The caller holds `dataset_lock`. The manifest is replaced first: a crash in between leaves
    a column that dataset.json does not list yet, which re-scoring with --force repairs.
    """
    path = fsio.join(dataset_dir, "manifest.parquet")
    table = fsio.read_table(path)
    if table.num_rows != len(values):
        raise ConfigError(f"{dataset_dir}: manifest has {table.num_rows} rows but {len(values)} scores "
                          "(changed while scoring?)")
    array = pa.array(np.asarray(values, dtype=np.float32))
    if column in table.column_names:
        table = table.set_column(table.column_names.index(column), column, array)
    else:
        table = table.append_column(column, array)
    with fsio.atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    info = fsio.read_json(fsio.join(dataset_dir, "dataset.json"))
    info["scores"] = {**(info.get("scores") or {}), column: record}
    write_info(dataset_dir, info)  # the layout `prepare` writes
