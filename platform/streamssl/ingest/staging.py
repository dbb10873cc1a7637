"""`prepare` builds a dataset in a temporary folder beside its target and moves it in when complete.

So a prepare that fails, is interrupted or stops under --strict leaves no partial dataset, and the
previous dataset in the target folder (if any) as it was. Into a new or empty target the finished
folder is renamed in one step. Into a folder that already holds a dataset, the old dataset.json
files go first (from then on no reader takes the folder for a dataset), then the old outputs, then
the new files move in with the train split's dataset.json last: a reader sees the old dataset, no
dataset, or the new one, never a mix. A folder left by a killed prepare is removed by the next one.

Into a URI (`s3://bucket/prefix`) the dataset is built in a local staging folder (`fsio.cache_dir`)
and uploaded in the same order: old dataset.json files deleted, old outputs removed, the new files
uploaded, the dataset.json files last, so the upload of dataset.json commits the dataset.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamssl import fsio
from streamssl.errors import ConfigError

_PARTIAL = ".partial-"


@contextmanager
def staged(out: Path | str, source: str) -> Iterator[Path]:
    """Yield an empty folder beside `out`; once the body succeeds its dataset replaces `out`'s.

    On any exception (KeyboardInterrupt included) the folder is removed and `out` is untouched.

    Raises:
        ConfigError: `out` is an existing file (before any work).
    """
    if fsio.exists(out) and not fsio.is_dir(out):
        raise ConfigError(f"--out: {out} is a file, not a folder")
    if fsio.is_uri(out):
        tmp = Path(tempfile.mkdtemp(prefix=f"{fsio.name(out)}{_PARTIAL}", dir=fsio.cache_dir("staging")))
        try:
            yield tmp
            _upload(tmp, str(out), source)
        finally:
            fsio.remove_tree(tmp)
        return
    out = Path(out)
    fsio.makedirs(out.parent)
    remove_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{_PARTIAL}{os.getpid()}-", dir=out.parent))
    try:
        yield tmp
        commit(tmp, out, source)
    finally:
        fsio.remove_tree(tmp)


def _upload(tmp: Path, out: str, source: str) -> None:
    for folder in (out, fsio.join(out, "test")):
        fsio.remove(fsio.join(folder, "dataset.json"))
    clear_outputs(out, source)
    fsio.upload_tree(tmp, out, last=("dataset.json",))


def remove_stale(out: Path) -> None:
    """Remove staging folders of earlier prepares into `out` whose process no longer runs."""
    for name in fnmatch.filter(fsio.listdir(out.parent), f".{out.name}{_PARTIAL}*"):
        pid = name[len(out.name) + 1 + len(_PARTIAL):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            fsio.remove_tree(out.parent / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def commit(tmp: Path, out: Path, source: str) -> None:
    """Move the finished dataset in `tmp` into `out` (see the module docstring for the order)."""
    if not fsio.exists(out) or (fsio.is_dir(out) and not fsio.listdir(out)):
        if fsio.exists(out):
            fsio.remove_tree(out)  # an empty folder
        fsio.rename(tmp, out)
        return
    for folder in (out, out / "test"):
        fsio.remove(folder / "dataset.json")
    clear_outputs(out, source)
    if fsio.is_dir(tmp / "test"):
        _move_split(tmp / "test", out / "test")
    _move_split(tmp, out)


def _move_split(src: Path, dst: Path) -> None:
    fsio.makedirs(dst)
    for name in fsio.listdir(src):
        if name not in ("dataset.json", "test"):
            fsio.rename(src / name, dst / name)
    if fsio.exists(src / "dataset.json"):
        fsio.rename(src / "dataset.json", dst / "dataset.json")


def clear_outputs(out: Path | str, source: str) -> None:
    """Remove what an earlier prepare wrote to `out`, so no stale shard or split lingers."""
    for folder in (out, fsio.join(out, "test")):
        if not fsio.is_dir(folder):
            continue
        stale = ["manifest.parquet", "dataset.json"]
        if source != "wds":  # wds outputs hold no shards; its input may even be `out` itself
            stale += fnmatch.filter(fsio.listdir(folder), "shard-*.tar")
            stale += fnmatch.filter(fsio.listdir(folder), "shard-*.tar.tmp")
        for name in stale:
            fsio.remove(fsio.join(folder, name))
