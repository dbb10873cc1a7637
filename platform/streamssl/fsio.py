"""File-system I/O of runs, datasets and streams: the one module that touches their files.

Every read and write of a run directory, a prepared dataset or a stream goes through these
functions, so that a later change can put object storage (pyarrow / fsspec URIs such as
s3://bucket/prefix) behind them without touching their callers. Paths are strings (os.PathLike is
accepted); build them with `join`, which keeps a URI's scheme intact.

Writes are atomic: a reader sees the old file or the new one, never half of either, so an
interrupted process never leaves a truncated run.json, manifest, report, figure or shard behind.
Writers that need a file name (pandas, matplotlib, pyarrow) use `atomic_path`; streaming writers
(tar shards) use `AtomicFile`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PathLike = str | os.PathLike


def join(*parts: PathLike) -> str:
    """`parts` joined by "/" (a URI's scheme and host stay as they are)."""
    return os.path.join(*(os.fspath(p) for p in parts))


# ---------------------------------------------------------------- reading


def exists(path: PathLike) -> bool:
    """Whether a file or folder is at `path`."""
    return os.path.exists(path)


def is_file(path: PathLike) -> bool:
    """Whether `path` is a file."""
    return os.path.isfile(path)


def is_dir(path: PathLike) -> bool:
    """Whether `path` is a folder."""
    return os.path.isdir(path)


def listdir(path: PathLike) -> list[str]:
    """The entry names of a folder, sorted."""
    return sorted(os.listdir(path))


def size(path: PathLike) -> int:
    """A file's size in bytes."""
    return os.path.getsize(path)


def read_bytes(path: PathLike) -> bytes:
    """A whole file's bytes."""
    with open(path, "rb") as f:
        return f.read()


def read_text(path: PathLike) -> str:
    """A UTF-8 text file (UnicodeDecodeError when it is not)."""
    return read_bytes(path).decode("utf-8")


def read_json(path: PathLike) -> Any:
    """A UTF-8 JSON file, parsed (json.JSONDecodeError when it is not JSON)."""
    return json.loads(read_text(path))


def open_input(path: PathLike) -> IO[bytes]:
    """A seekable binary file for ranged reads (`seek` then `read`); close it (use `with`)."""
    return open(path, "rb")  # noqa: SIM115 (the caller closes it)


def read_table(path: PathLike, **kwargs: Any):
    """A Parquet file as a pyarrow Table (`pyarrow.parquet.read_table`'s keyword arguments)."""
    import pyarrow.parquet as pq

    return pq.read_table(os.fspath(path), **kwargs)


def parquet_file(path: PathLike):
    """A Parquet file opened for reading by row group (`pyarrow.parquet.ParquetFile`)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(os.fspath(path))


def parquet_columns(path: PathLike) -> list[str]:
    """The column names of a Parquet file (its schema only, no data)."""
    import pyarrow.parquet as pq

    return pq.read_schema(os.fspath(path)).names


def read_dataframe(path: PathLike, columns: list[str] | None = None):
    """A Parquet file as a pandas DataFrame (`pandas.read_parquet`)."""
    import pandas as pd

    return pd.read_parquet(os.fspath(path), columns=columns)


# ---------------------------------------------------------------- writing (atomic)


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    For writers that take a file name (pandas, matplotlib, torch.save, pyarrow). On an exception
    the temporary file is removed and `path` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AtomicFile:
    """A binary file written front to back that appears at `path` only on `commit()`.

    Until then it is `path + ".tmp"`; `discard()` removes it. For streaming writers that keep a
    file open across many calls (tar shards).
    """

    def __init__(self, path: PathLike):
        self.path = os.fspath(path)
        self._tmp = self.path + ".tmp"
        self._file = open(self._tmp, "wb")  # noqa: SIM115 (closed by commit or discard)

    def write(self, data: bytes) -> int:
        return self._file.write(data)

    def commit(self) -> None:
        self._file.close()
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        self._file.close()
        Path(self._tmp).unlink(missing_ok=True)


def write_bytes(path: PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (the folder is created)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: PathLike, text: str) -> Path:
    """Write `text` as UTF-8 to `path` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, payload: Any) -> Path:
    """Write `payload` as indented JSON to `path` atomically (unknown types as str)."""
    return write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


# ---------------------------------------------------------------- folders


def makedirs(path: PathLike) -> None:
    """Create a folder and its parents (nothing when it exists)."""
    os.makedirs(path, exist_ok=True)


def remove(path: PathLike) -> None:
    """Delete a file (nothing when it does not exist)."""
    Path(path).unlink(missing_ok=True)


def remove_tree(path: PathLike) -> None:
    """Delete a folder with everything in it (nothing when it does not exist)."""
    shutil.rmtree(path, ignore_errors=True)


def copy(src: PathLike, dst: PathLike) -> None:
    """Copy a file's bytes to `dst` (replacing it)."""
    shutil.copyfile(src, dst)


def rename(src: PathLike, dst: PathLike) -> None:
    """Move a file or folder to `dst`, replacing a file there (one rename on a local disk)."""
    os.replace(src, dst)
