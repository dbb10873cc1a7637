"""A run directory's life: what may be written where, stopping on a signal, and what resumes.

run.json `status` goes `running` -> `completed`, `failed` (with `error`) or `interrupted` (with
`resumable`). A signal (SIGINT, SIGTERM) or a file `RUN_DIR/STOP` asks the run to stop after the
current stream batch: metrics are flushed, a final checkpoint is written when checkpoints are on,
and the run can be continued with `--resume`. A second signal stops at once.
"""

from __future__ import annotations

import fnmatch
import logging
import signal
import threading

from streamssl import fsio
from streamssl.errors import StreamSSLError

log = logging.getLogger(__name__)

STOP_FILE = "STOP"
RUN_INFO = "run.json"
# What a run writes into its directory; a fresh run clears these (and nothing else) first.
RUN_OUTPUTS = ("config.yaml", RUN_INFO, "metrics.parquet", "metrics.csv", "events.out.tfevents.*", "model.pt",
               "buffer_keys.rank*.json", "report.md", "*.png", "progress.json", "failed_state*.pt", STOP_FILE,
               "checkpoints", "ray_train", "workers", ".*.tmp*")


class RunInterrupted(StreamSSLError):
    """The run stopped on a signal; run.json says where and whether it can be resumed."""

    exit_code = 130


def read_info(run_dir: str) -> dict | None:
    """run.json as a dict, or None when there is none (or it is not a JSON object)."""
    try:
        info = fsio.read_json(fsio.join(run_dir, RUN_INFO))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def write_info(run_dir: str, info: dict) -> None:
    fsio.write_json(fsio.join(run_dir, RUN_INFO), info)


def checkpoint_dirs(run_dir: str) -> list[str]:
    """Every checkpoint folder of a run: in-process (`checkpoints/`) and Ray Train ones."""
    found = fsio.glob(fsio.join(run_dir, "checkpoints"), "pos-*")
    for launch in fsio.glob(fsio.join(run_dir, "ray_train"), "*"):
        # Ray Train keeps checkpoint_manager_snapshot.json beside its checkpoint_<time> folders
        found += [c for c in fsio.glob(launch, "checkpoint_*") if not c.endswith(".json")]
    return sorted(found)


def latest_checkpoint(run_dir: str, world_size: int) -> str | None:
    """The newest complete checkpoint of a run, or None; partial ones are skipped."""
    from streamssl.train.checkpoint import latest_complete

    return latest_complete(checkpoint_dirs(run_dir), world_size)


def check_out_dir(out: str, overwrite: bool) -> None:
    """Refuse an `--out` that would mix a new run into existing files; with `overwrite`, clear a run.

    Raises:
        StreamSSLError: `out` is a file, a prepared dataset or stream, another folder that is not
            empty, or a run (naming `--resume` when it can be continued, and `--overwrite`).
    """
    if fsio.exists(out) and not fsio.is_dir(out):
        raise StreamSSLError(f"--out {out}: is a file, not a directory")
    for marker, what in (("dataset.json", "a prepared dataset"), ("stream.json", "a materialized stream")):
        if fsio.exists(fsio.join(out, marker)):
            raise StreamSSLError(f"--out {out}: is {what}; write the run to a new directory")
    if not fsio.is_dir(out) or not fsio.listdir(out):
        return
    info = read_info(out)
    if info is None and not fsio.is_file(fsio.join(out, "config.yaml")):
        raise StreamSSLError(f"--out {out}: is not empty and holds no streamssl run; choose a new directory")
    if overwrite:
        clear_run(out)
        return
    status = (info or {}).get("status", "unknown")
    hint = f"continue it with `streamssl run --resume {out}`, or " if resumable(out, info) else ""
    raise StreamSSLError(f"--out {out}: already holds a run (status {status}); {hint}"
                         f"pass --overwrite to replace it")


def resumable(run_dir: str, info: dict | None) -> bool:
    """Whether `--resume` would continue this run: not completed, and a complete checkpoint exists."""
    if info is not None and info.get("status") == "completed":
        return False
    workers = int((info or {}).get("num_workers") or 1)
    try:
        return latest_checkpoint(run_dir, workers) is not None
    except StreamSSLError:  # a manifest from another worker count: not this run's to resume
        return False


def clear_run(run_dir: str) -> None:
    """Remove what a run writes (TensorBoard events and checkpoints included); other files stay."""
    names = fsio.listdir(run_dir) if fsio.is_dir(run_dir) else []
    for pattern in RUN_OUTPUTS:
        for name in fnmatch.filter(names, pattern):
            path = fsio.join(run_dir, name)
            if fsio.is_dir(path):
                fsio.remove_tree(path)
            else:
                fsio.remove(path)


def stop_requested(run_dir: str) -> bool:
    return fsio.exists(fsio.join(run_dir, STOP_FILE))


class StopOnSignal:
    """While active, SIGINT/SIGTERM ask the run to stop after the current stream batch.

    The request is the file RUN_DIR/STOP, which every worker (in this process or in Ray Train
    workers) checks after each stream batch (`WorkerContext.stop_file`). A second signal raises
    KeyboardInterrupt at once.
    Handlers can only be set from the main thread; elsewhere (a Tune trial) this does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, run_dir: str) -> None:
        self.run_dir, self.received, self._saved = str(run_dir), None, {}

    def __enter__(self) -> StopOnSignal:
        fsio.remove(fsio.join(self.run_dir, STOP_FILE))  # an earlier run's request is not ours
        if threading.current_thread() is threading.main_thread():
            self._saved = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        fsio.remove(fsio.join(self.run_dir, STOP_FILE))  # served (or came too late to matter)

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        fsio.write_text(fsio.join(self.run_dir, STOP_FILE), f"{self.received}\n")
        log.warning("%s: stopping after the current stream batch (send it again to stop at once)", self.received)
