"""A run directory's life: what may be written where, stopping on a signal, and what resumes.

run.json `status` goes `running` -> `completed`, `failed` (with `error`) or `interrupted` (with
`resumable`). A signal (SIGINT, SIGTERM) or a file `RUN_DIR/STOP` asks the run to stop after the
current stream batch: metrics are flushed, a final checkpoint is written when checkpoints are on,
and the run can be continued with `--resume`. A second signal stops at once.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import threading
from pathlib import Path

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


def read_info(run_dir: Path) -> dict | None:
    """run.json as a dict, or None when there is none (or it is not a JSON object)."""
    try:
        info = json.loads((Path(run_dir) / RUN_INFO).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def write_info(run_dir: Path, info: dict) -> None:
    fsio.write_json(Path(run_dir) / RUN_INFO, info)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Every checkpoint folder of a run: in-process (`checkpoints/`) and Ray Train ones."""
    found = [*run_dir.glob("checkpoints/pos-*"), *run_dir.glob("ray_train/*/checkpoint_*")]
    return sorted(p for p in found if p.is_dir())


def latest_checkpoint(run_dir: Path, world_size: int) -> Path | None:
    """The newest complete checkpoint of a run, or None; partial ones are skipped."""
    from streamssl.train.checkpoint import latest_complete

    return latest_complete(checkpoint_dirs(Path(run_dir)), world_size)


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse an `--out` that would mix a new run into existing files; with `overwrite`, clear a run.

    Raises:
        StreamSSLError: `out` is a file, a prepared dataset or stream, another folder that is not
            empty, or a run (naming `--resume` when it can be continued, and `--overwrite`).
    """
    if out.exists() and not out.is_dir():
        raise StreamSSLError(f"--out {out}: is a file, not a directory")
    for marker, what in (("dataset.json", "a prepared dataset"), ("stream.json", "a materialized stream")):
        if (out / marker).exists():
            raise StreamSSLError(f"--out {out}: is {what}; write the run to a new directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    info = read_info(out)
    if info is None and not (out / "config.yaml").is_file():
        raise StreamSSLError(f"--out {out}: is not empty and holds no streamssl run; choose a new directory")
    if overwrite:
        clear_run(out)
        return
    status = (info or {}).get("status", "unknown")
    hint = f"continue it with `streamssl run --resume {out}`, or " if resumable(out, info) else ""
    raise StreamSSLError(f"--out {out}: already holds a run (status {status}); {hint}"
                         f"pass --overwrite to replace it")


def resumable(run_dir: Path, info: dict | None) -> bool:
    """Whether `--resume` would continue this run: not completed, and a complete checkpoint exists."""
    if info is not None and info.get("status") == "completed":
        return False
    workers = int((info or {}).get("num_workers") or 1)
    try:
        return latest_checkpoint(run_dir, workers) is not None
    except StreamSSLError:  # a manifest from another worker count: not this run's to resume
        return False


def clear_run(run_dir: Path) -> None:
    """Remove what a run writes (TensorBoard events and checkpoints included); other files stay."""
    for pattern in RUN_OUTPUTS:
        for path in Path(run_dir).glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def stop_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / STOP_FILE).exists()


class StopOnSignal:
    """While active, SIGINT/SIGTERM ask the run to stop after the current stream batch.

    The request is the file RUN_DIR/STOP, which every worker (in this process or in Ray Train
    workers) checks after each stream batch (`WorkerContext.stop_file`). A second signal raises
    KeyboardInterrupt at once.
    Handlers can only be set from the main thread; elsewhere (a Tune trial) this does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.received, self._saved = Path(run_dir), None, {}

    def __enter__(self) -> StopOnSignal:
        (self.run_dir / STOP_FILE).unlink(missing_ok=True)  # an earlier run's request is not ours
        if threading.current_thread() is threading.main_thread():
            self._saved = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        (self.run_dir / STOP_FILE).unlink(missing_ok=True)  # served (or came too late to matter)

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        fsio.write_text(self.run_dir / STOP_FILE, f"{self.received}\n")
        log.warning("%s: stopping after the current stream batch (send it again to stop at once)", self.received)
