"""File-system I/O of runs, datasets and streams: the one module that touches their files.

Every read and write of a run directory, a prepared dataset or a stream goes through these
functions. Paths are strings (os.PathLike is accepted): a local path, or a URI of any pyarrow file
system (`s3://bucket/prefix`, `gs://...`, `file:///...`); build them with `join`, which keeps a URI's
scheme intact (`pathlib.Path` does not: it folds `s3://` into `s3:/`).

S3 settings come from the standard AWS variables, read by `s3_filesystem` in every process that
opens an `s3://` path: AWS_ENDPOINT_URL (an S3-compatible store on premises; pyarrow itself does
not read it), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION.
`storage_env` names them so that Ray workers can be given the driver's.

Writes are atomic: a reader sees the old file or the new one, never half of either. Locally that
is a temporary file and one rename; in an object store, an object appears only once its upload
completes, so the temporary file is local (under `cache_dir`) and uploaded in one PUT. Folders of
several objects are committed by writing their manifest (dataset.json, stream.json, run.json,
rank*.done) last; readers trust only a folder whose manifest exists.
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from streamssl.filesystems import S3_ENV, is_uri, resolve, s3_filesystem, storage_env, to_uri

__all__ = ["S3_ENV", "is_uri", "resolve", "s3_filesystem", "storage_env", "to_uri"]  # re-exported: one I/O module

PathLike = str | os.PathLike

MAX_GAP_BYTES = 256 << 10  # `read_ranges`: neighbours closer than this are fetched in one request


def join(*parts: PathLike) -> str:
    """`parts` joined by "/" (a URI's scheme and host stay as they are)."""
    return os.path.join(*(os.fspath(p) for p in parts))


def normpath(path: PathLike) -> str:
    """`path` with "." and ".." folded (a URI's scheme and bucket kept)."""
    text = os.fspath(path)
    if not is_uri(text):
        return os.path.normpath(text)
    scheme, rest = text.split("://", 1)
    return f"{scheme}://{posixpath.normpath(rest)}"


def absolute(path: PathLike) -> str:
    """A local path made absolute (Ray workers may run elsewhere); a URI as it is."""
    text = os.fspath(path)
    return text if is_uri(text) else os.path.abspath(os.path.expanduser(text))


def as_path(path: PathLike) -> Path | str:
    """A local path as a pathlib.Path (for callers that keep using pathlib), a URI as its string."""
    text = os.fspath(path)
    return text if is_uri(text) else Path(text)


def name(path: PathLike) -> str:
    """The last component of a path or URI."""
    return os.path.basename(os.fspath(path).rstrip("/"))


def parent(path: PathLike) -> str:
    """The folder holding `path` (URIs keep their scheme)."""
    return os.path.dirname(os.fspath(path).rstrip("/"))


def _info(path: PathLike):
    filesystem, inner = resolve(path)
    return filesystem.get_file_info(inner)


# ---------------------------------------------------------------- reading


def exists(path: PathLike) -> bool:
    """Whether a file or folder is at `path`."""
    if not is_uri(path):
        return os.path.exists(resolve(path)[1])
    from pyarrow import fs as pafs

    return _info(path).type != pafs.FileType.NotFound


def is_file(path: PathLike) -> bool:
    """Whether `path` is a file."""
    if not is_uri(path):
        return os.path.isfile(resolve(path)[1])
    from pyarrow import fs as pafs

    return _info(path).type == pafs.FileType.File


def is_dir(path: PathLike) -> bool:
    """Whether `path` is a folder (in an object store: a prefix with objects under it)."""
    if not is_uri(path):
        return os.path.isdir(resolve(path)[1])
    from pyarrow import fs as pafs

    return _info(path).type == pafs.FileType.Directory


def listdir(path: PathLike) -> list[str]:
    """The entry names of a folder, sorted (locally FileNotFoundError when there is none)."""
    if not is_uri(path):
        return sorted(os.listdir(resolve(path)[1]))
    from pyarrow import fs as pafs

    filesystem, inner = resolve(path)  # an object store has no empty folders: none is an empty one
    entries = filesystem.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    return sorted(name(e.path) for e in entries)


def glob(folder: PathLike, pattern: str) -> list[str]:
    """Paths of the entries of `folder` whose names match `pattern` (fnmatch), sorted; [] without one."""
    try:
        names = listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [join(folder, n) for n in fnmatch.filter(names, pattern)]


def size(path: PathLike) -> int:
    """A file's size in bytes."""
    if not is_uri(path):
        return os.path.getsize(resolve(path)[1])
    info = _info(path)
    if info.size is None:
        raise FileNotFoundError(f"no file at {os.fspath(path)}")
    return int(info.size)


def read_bytes(path: PathLike) -> bytes:
    """A whole file's bytes."""
    if not is_uri(path):
        with open(resolve(path)[1], "rb") as f:
            return f.read()
    filesystem, inner = resolve(path)
    with filesystem.open_input_stream(inner) as f:
        return f.read()


def read_text(path: PathLike) -> str:
    """A UTF-8 text file (UnicodeDecodeError when it is not)."""
    return read_bytes(path).decode("utf-8")


def read_json(path: PathLike) -> Any:
    """A UTF-8 JSON file, parsed (json.JSONDecodeError when it is not JSON)."""
    return json.loads(read_text(path))


def open_input(path: PathLike) -> IO[bytes]:
    """A seekable binary file for ranged reads (`seek` then `read`); close it (use `with`).

    In an object store every `read` after a `seek` is one ranged GET; read neighbouring ranges
    through `read_ranges`, which coalesces them.
    """
    if not is_uri(path):
        return open(resolve(path)[1], "rb")  # noqa: SIM115 (the caller closes it)
    filesystem, inner = resolve(path)
    return filesystem.open_input_file(inner)


def read_ranges(path: PathLike, ranges: list[tuple[int, int]], max_gap: int = MAX_GAP_BYTES) -> list[bytes]:
    """The bytes of each (offset, length) range of one file, in the order given.

    Ranges closer than `max_gap` bytes are fetched as one read (one GET in an object store): the
    bytes between them cost less than another request.
    """
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    out: list[bytes] = [b""] * len(ranges)
    with open_input(path) as f:
        for group in _coalesce([ranges[i] for i in order], order, max_gap):
            start = group[0][1][0]
            stop = max(offset + length for _, (offset, length) in group)
            f.seek(start)
            data = f.read(stop - start)
            for i, (offset, length) in group:
                out[i] = bytes(data[offset - start:offset - start + length])
    return out


def _coalesce(sorted_ranges: list[tuple[int, int]], order: list[int], max_gap: int) -> list[list]:
    groups: list[list] = []
    end = None
    for i, (offset, length) in zip(order, sorted_ranges):
        if end is None or offset - end > max_gap:
            groups.append([])
            end = offset
        groups[-1].append((i, (offset, length)))
        end = max(end, offset + length)
    return groups


def read_table(path: PathLike, **kwargs: Any):
    """A Parquet file as a pyarrow Table (`pyarrow.parquet.read_table`'s keyword arguments)."""
    import pyarrow.parquet as pq

    filesystem, inner = resolve(path)
    return pq.read_table(inner, filesystem=filesystem, **kwargs)


def parquet_file(path: PathLike):
    """A Parquet file opened for reading by row group (`pyarrow.parquet.ParquetFile`)."""
    import pyarrow.parquet as pq

    filesystem, inner = resolve(path)
    return pq.ParquetFile(inner, filesystem=filesystem)


def parquet_columns(path: PathLike) -> list[str]:
    """The column names of a Parquet file (its schema only, no data)."""
    import pyarrow.parquet as pq

    filesystem, inner = resolve(path)
    return pq.read_schema(inner, filesystem=filesystem).names


def read_dataframe(path: PathLike, columns: list[str] | None = None):
    """A Parquet file as a pandas DataFrame."""
    return read_table(path, columns=columns).to_pandas()


def torch_load(path: PathLike, **kwargs: Any):
    """`torch.load` of a file anywhere (an object is read whole into memory first)."""
    import io

    import torch

    if not is_uri(path):
        return torch.load(resolve(path)[1], **kwargs)
    return torch.load(io.BytesIO(read_bytes(path)), **kwargs)


# ---------------------------------------------------------------- local caches


def cache_dir(*parts: str) -> str:
    """A local folder for caches and upload staging: STREAMSSL_CACHE, else the temp dir's
    `streamssl-cache`. Nothing else of a run with URI paths is written to the local disk."""
    root = os.environ.get("STREAMSSL_CACHE") or os.path.join(tempfile.gettempdir(), "streamssl-cache")
    folder = os.path.join(root, *parts)
    os.makedirs(folder, exist_ok=True)
    return folder


def local_copy(path: PathLike) -> str:
    """A local path with `path`'s bytes: `path` itself, or for a URI a copy under `cache_dir`."""
    if not is_uri(path):
        return resolve(path)[1]
    import hashlib

    digest = hashlib.sha256(os.fspath(path).encode()).hexdigest()[:16]
    copy_path = os.path.join(cache_dir("copies"), f"{digest}-{name(path)}")
    with atomic_path(copy_path) as tmp:
        tmp.write_bytes(read_bytes(path))
    return copy_path


def upload_tree(local: PathLike, target: PathLike, last: tuple[str, ...] = ()) -> None:
    """Copy a local folder's files to `target` (a path or URI); names matching a `last` pattern
    (fnmatch) go at the end, nested ones before the top folder's.

    `last` are the folder's manifests: written after everything they describe, they commit it.
    """
    local = os.fspath(local)
    files, final = [], []
    for folder, _, names in os.walk(local):
        for n in sorted(names):
            rel = os.path.relpath(os.path.join(folder, n), local)
            (final if any(fnmatch.fnmatch(n, p) for p in last) else files).append(rel)
    for rel in files + sorted(final, key=lambda r: -r.count(os.sep)):  # nested manifests before the top one
        with open(os.path.join(local, rel), "rb") as f:
            write_bytes(join(target, rel.replace(os.sep, "/")), f.read())


# ---------------------------------------------------------------- writing (atomic)


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary local path; on success its file replaces `path` at once.

    For writers that take a file name (pandas, matplotlib, torch.save, pyarrow). Locally the
    temporary file lies beside `path` and is renamed over it; for a URI it lies in `cache_dir` and
    is uploaded as one object. On an exception it is removed and `path` is left as it was.
    """
    text = os.fspath(path)
    if is_uri(text):
        fd, tmp = tempfile.mkstemp(prefix=".upload.", suffix=".tmp" + Path(name(text)).suffix, dir=cache_dir())
        os.close(fd)
        try:
            yield Path(tmp)
            _upload(tmp, text)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return
    target = Path(resolve(text)[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _upload(local: str, uri: str) -> None:
    """One object from a local file; it becomes visible only when the upload completes."""
    filesystem, inner = resolve(uri)
    with open(local, "rb") as src, filesystem.open_output_stream(inner) as dst:
        shutil.copyfileobj(src, dst, 8 << 20)


class AtomicFile:
    """A binary file written front to back that appears at `path` only on `commit()`.

    Until then it is a temporary file (`path + ".tmp"`; for a URI, in `cache_dir`, uploaded on
    commit); `discard()` removes it. For streaming writers that keep a file open across many calls
    (tar shards).
    """

    def __init__(self, path: PathLike):
        self.path = os.fspath(path)
        if is_uri(self.path):
            fd, self._tmp = tempfile.mkstemp(prefix=".upload.", suffix=".tmp", dir=cache_dir())
            os.close(fd)
        else:
            self._tmp = resolve(self.path)[1] + ".tmp"
        self._file = open(self._tmp, "wb")  # noqa: SIM115 (closed by commit or discard)

    def write(self, data: bytes) -> int:
        return self._file.write(data)

    def commit(self) -> None:
        self._file.close()
        if is_uri(self.path):
            try:
                _upload(self._tmp, self.path)
            finally:
                Path(self._tmp).unlink(missing_ok=True)
            return
        os.replace(self._tmp, resolve(self.path)[1])

    def discard(self) -> None:
        self._file.close()
        Path(self._tmp).unlink(missing_ok=True)


def write_bytes(path: PathLike, data: bytes) -> str:
    """Write `data` to `path` atomically (the folder is created); returns `path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return os.fspath(path)


def write_text(path: PathLike, text: str) -> str:
    """Write `text` as UTF-8 to `path` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, payload: Any) -> str:
    """Write `payload` as indented JSON to `path` atomically (unknown types as str)."""
    return write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


# ---------------------------------------------------------------- folders


def makedirs(path: PathLike) -> None:
    """Create a folder and its parents (nothing when it exists; object stores need none)."""
    if not is_uri(path):
        os.makedirs(resolve(path)[1], exist_ok=True)
    elif not os.fspath(path).startswith("s3://"):
        filesystem, inner = resolve(path)
        filesystem.create_dir(inner, recursive=True)


def remove(path: PathLike) -> None:
    """Delete a file (nothing when it does not exist)."""
    if not is_uri(path):
        Path(resolve(path)[1]).unlink(missing_ok=True)
        return
    filesystem, inner = resolve(path)
    try:
        filesystem.delete_file(inner)
    except FileNotFoundError:
        pass


def remove_tree(path: PathLike) -> None:
    """Delete a folder with everything in it (nothing when it does not exist)."""
    if not is_uri(path):
        shutil.rmtree(resolve(path)[1], ignore_errors=True)
        return
    if is_dir(path):
        filesystem, inner = resolve(path)
        filesystem.delete_dir(inner)


def copy(src: PathLike, dst: PathLike) -> None:
    """Copy a file's bytes to `dst` (replacing it); either may be a URI."""
    if not is_uri(src) and not is_uri(dst):
        shutil.copyfile(resolve(src)[1], resolve(dst)[1])
        return
    write_bytes(dst, read_bytes(src))


def rename(src: PathLike, dst: PathLike) -> None:
    """Move a file or folder to `dst`, replacing a file there (one rename on a local disk; in an
    object store a copy and a delete per object, so commit folders by their manifest instead)."""
    if not is_uri(src) and not is_uri(dst):
        os.replace(resolve(src)[1], resolve(dst)[1])
        return
    filesystem, inner = resolve(src)
    filesystem.move(inner, resolve(dst)[1])
