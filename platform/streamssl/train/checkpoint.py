"""Exact-resume checkpoints of one worker, as rank-suffixed files in a shared directory.

This module only writes files and manifests: what a learner holds comes from
`learner.state_dict()` and goes back through `learner.load_state_dict(state, device)`; the loop's
state (stream clock, position, counts, evaluations) is saved beside it as plain data.

Layout of a checkpoint directory (every rank writes its own files, so W workers can save into one
directory, or into per-worker directories that Ray Train merges):

    rank{r}.pt          torch.save of tensors and plain containers only: the learner's state dict
                        (model, optimizer, LR-schedule position, buffer, selection-policy caches,
                        generator and global RNG states, counters, previous gradient), a fingerprint
                        of the settings it fits, and the loop's state
    rank{r}.done        JSON manifest written last and atomically: format, rank, world size, stream
                        batches consumed (the loop's clock), updates, and the byte size and SHA-256 of
                        each file above

A rank whose manifest is missing, or whose files do not match it, did not finish saving: the
checkpoint is partial and `latest_complete` skips it. Checkpoints are saved into a local folder
(the caller uploads it, manifests last) and read from wherever they are, a local path or a URI
(`streamssl.fsio`). Loading uses `torch.load(weights_only=True)`,
so a file holding anything other than tensors and plain containers is refused, never unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from streamssl import distributed, fsio
from streamssl.errors import StreamSSLError, first_line

log = logging.getLogger(__name__)

FORMAT = 1
_PLAIN = (bool, int, float, str, type(None))
_OWN_KEYS = ("fingerprint", "format", "rank", "world_size", "loop_state")  # rank{r}.pt's keys besides the learner's


def state_file(rank: int) -> str:
    return f"rank{rank}.pt"


def marker_file(rank: int) -> str:
    return f"rank{rank}.done"


def save_checkpoint(directory: str | os.PathLike, rank: int, learner, loop_state: dict, *,
                    world_size: int | None = None) -> Path:
    """Write this rank's part of a checkpoint; the manifest goes last, so a crash leaves it partial.

    Args:
        directory: checkpoint directory (created if needed); other ranks may write into it too.
        rank: this worker's rank.
        learner: the `streamssl.train.learner.Learner` to save.
        loop_state: the loop's own state (stream batches consumed as `batches`, position, counts,
            evaluations) as plain Python values and tensors; numpy scalars and arrays are converted.
        world_size: number of ranks saving this checkpoint; default: torch.distributed's world
            size (1 without a process group).

    Returns:
        Path of this rank's manifest (`rank{r}.done`).

    Raises:
        StreamSSLError: loop_state holds a value that is not plain data.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    world_size = _world_size(world_size)
    marker = directory / marker_file(rank)
    marker.unlink(missing_ok=True)  # overwriting an older save: it is partial until the new manifest
    state = {**learner.state_dict(), "fingerprint": _fingerprint(learner), "format": FORMAT, "rank": rank,
             "world_size": world_size, "loop_state": _plain(loop_state, "loop_state")}
    written = _write_atomic(directory / state_file(rank), lambda f: torch.save(state, f))
    manifest = {"format": FORMAT, "rank": rank, "world_size": world_size,
                "batches": int(loop_state.get("batches", 0)), "update": learner.update,
                "files": {state_file(rank): written}}
    _write_atomic(marker, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    return marker


def load_checkpoint(directory: str | os.PathLike, rank: int, learner, *, world_size: int | None = None) -> dict:
    """Restore this rank's learner from a checkpoint written by `save_checkpoint`.

    Args:
        directory: checkpoint directory.
        rank: this worker's rank.
        learner: a freshly built `Learner` with the same config as the saved one; modified in place.
        world_size: this run's number of ranks (default as in `save_checkpoint`); it must equal
            the saved one, since each rank's buffer and stream slice depend on it.

    Returns:
        The loop_state dict that was saved (`batches` from the manifest when it lacks one).

    Raises:
        StreamSSLError: the checkpoint is missing, partial or corrupt, holds non-tensor objects,
            was written by a different number of workers, or by an incompatible config.
    """
    directory = os.fspath(directory)
    manifest = _check_world_size(directory, rank, _world_size(world_size))
    state = _load_file(directory, state_file(rank), manifest)
    _check_fingerprint(directory, state.get("fingerprint", {}), _fingerprint(learner))
    learner.load_state_dict({k: v for k, v in state.items() if k not in _OWN_KEYS}, learner.device)
    return {"batches": manifest["batches"], **state["loop_state"]}


def is_complete(directory: str | os.PathLike, world_size: int, *, verify: bool = False) -> bool:
    """Whether every rank in [0, world_size) finished saving into `directory`.

    Args:
        directory: checkpoint directory.
        world_size: the run's number of ranks.
        verify: also compare SHA-256 checksums (reads every file); sizes are always compared.

    Raises:
        StreamSSLError: a manifest there was written by a run with a different number of workers.
    """
    return _incomplete_reason(os.fspath(directory), world_size, verify) is None


def latest_complete(checkpoint_dirs: list[str], world_size: int, *, verify: bool = False) -> str | None:
    """The complete checkpoint furthest along the stream; partial ones are skipped with a warning.

    Args:
        checkpoint_dirs: candidate checkpoint directories (missing ones count as partial).
        world_size: the run's number of ranks.
        verify: as in `is_complete`.

    Returns:
        The directory whose rank-0 manifest records the most stream batches (ties: the greatest
        path), or None when none is complete.

    Raises:
        StreamSSLError: a checkpoint was written by a run with a different number of workers.
    """
    complete = []
    for directory in map(os.fspath, checkpoint_dirs):
        reason = _incomplete_reason(directory, world_size, verify)
        if reason is not None:
            log.warning("skipping partial checkpoint %s: %s", directory, reason)
            continue
        complete.append((_read_manifest(directory, 0)["batches"], directory, directory))
    return max(complete)[2] if complete else None


def _incomplete_reason(directory: str, world_size: int, verify: bool) -> str | None:
    if not fsio.is_dir(directory):
        return "not a directory"
    for marker in fsio.glob(directory, "rank*.done"):  # a mismatch is an error, not a partial save
        _check_world_size(directory, int(fsio.name(marker)[4:-5]), world_size)
    for rank in range(world_size):
        manifest = _read_manifest(directory, rank)
        if manifest is None:
            return f"rank {rank} has no {marker_file(rank)}"
        for name, meta in manifest["files"].items():
            problem = _file_problem(fsio.join(directory, name), meta, verify)
            if problem:
                return problem
    return None


def _check_world_size(directory: str, rank: int, world_size: int) -> dict:
    manifest = _read_manifest(directory, rank)
    if manifest is None:
        raise StreamSSLError(f"no complete checkpoint for rank {rank} in {directory} ({marker_file(rank)} missing)")
    if manifest["world_size"] != world_size:
        raise StreamSSLError(f"checkpoint {directory} was written by {manifest['world_size']} workers, this run "
                             f"has {world_size}: resume with scaling.num_workers={manifest['world_size']}")
    return manifest


def _read_manifest(directory: str, rank: int) -> dict | None:
    """The rank's manifest; None when missing (atomic writes make it whole or absent)."""
    path = fsio.join(directory, marker_file(rank))
    try:
        manifest = json.loads(fsio.read_text(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise StreamSSLError(f"checkpoint manifest {path} is unreadable: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StreamSSLError(f"checkpoint manifest {path} is not a format-{FORMAT} streamssl manifest")
    return manifest


def _file_problem(path: str, meta: dict, verify: bool) -> str | None:
    try:
        size = fsio.size(path)
    except FileNotFoundError:
        return f"{fsio.name(path)} is missing"
    if size != meta["bytes"]:
        return f"{fsio.name(path)} has {size} bytes, its manifest says {meta['bytes']}"
    if verify and _sha256(path) != meta["sha256"]:
        return f"{fsio.name(path)} does not match its manifest's SHA-256"
    return None


def _load_file(directory: str, name: str, manifest: dict):
    path = fsio.join(directory, name)
    problem = _file_problem(path, manifest["files"][name], verify=True)
    if problem:
        raise StreamSSLError(f"checkpoint {directory} is corrupt: {problem}")
    try:
        return fsio.torch_load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:  # weights_only refuses classes it does not know
        raise StreamSSLError(f"checkpoint file {path} holds objects other than tensors and plain containers; "
                             f"refusing to unpickle them ({first_line(err)})") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile) as err:
        raise StreamSSLError(f"checkpoint file {path} is unreadable: {first_line(err)}") from err


def _write_atomic(path: Path, write) -> dict:
    """Write through a temporary file, fsync, rename; returns the file's size and SHA-256."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    digest = _sha256(tmp)  # read back: the page cache makes this cheap next to serializing
    os.replace(tmp, path)
    return {"bytes": path.stat().st_size, "sha256": digest}


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with fsio.open_input(path) as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(learner) -> dict:
    """Settings that must match for the saved state to fit and continue the same run."""
    c = learner.config
    return {"method.name": c.method_name, "model.backbone": c.model.backbone, "model.image_size": c.model.image_size,
            "buffer.size": c.buffer.size, "buffer.policy": c.buffer.policy,
            "buffer.protect_new": c.buffer.protect_new, "learner.schedule": c.learner.schedule,
            "learner.stream_batch": c.learner.stream_batch, "learner.k": c.learner.k,
            "feature_dim": learner.buffer.feature_dim, "total_updates": learner.total_updates}


def _check_fingerprint(directory: Path, saved: dict, mine: dict) -> None:
    for key, value in mine.items():
        if key in saved and saved[key] != value:
            what = "stream length (total updates)" if key == "total_updates" else key
            raise StreamSSLError(f"checkpoint {directory} was written with {what}={saved[key]}, this run has "
                                 f"{value}: resume with the run's original config")


def _plain(value, where: str):
    """A copy of value made of tensors and plain containers (numpy converted), or a clear error."""
    if type(value) in _PLAIN or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if type(value) in (list, tuple):
        return type(value)(_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    if type(value) is dict:
        return {_plain(k, f"{where} key"): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise StreamSSLError(f"cannot checkpoint {where}: a {type(value).__name__} is not a tensor, number, string, "
                         f"list, tuple or dict (checkpoints must load with torch.load(weights_only=True))")


def _world_size(world_size: int | None) -> int:
    return distributed.world_size() if world_size is None else world_size
