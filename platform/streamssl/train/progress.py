"""Stream progress across processes: rank 0 publishes where it is, a driver draws the bar.

Inside Ray Train the rank-0 loop's own progress bar writes to a worker's stderr, which the driver
does not show (logs are not forwarded, to keep Ray's noise out of the terminal). So rank 0 hands
its position to a `ProgressBoard` that the driver runs as a Ray actor (`install_publisher`), and
the driver's `ProgressFollower` polls that actor: nothing goes through a shared filesystem, which a
multi-node cluster need not have. RUN_DIR/progress.json is kept as a record for operators (a few
writes a minute at most); no driver reads it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

from tqdm import tqdm

from streamssl import fsio

PROGRESS_FILE = "progress.json"
URI_EVERY_SECONDS = 15.0  # object-store writes are requests, not page-cache writes: fewer of them

_publisher: Callable[[dict], None] | None = None


def install_publisher(publish: Callable[[dict], None] | None) -> None:
    """Every `ProgressWriter` of this process also hands its fields to `publish` (None: stop)."""
    global _publisher
    _publisher = publish


class ProgressWriter:
    """Publishes rank 0's position at most every `every` seconds, and records it in progress.json."""

    def __init__(self, run_dir: str | os.PathLike, every: float = 1.0) -> None:
        self.path, self.every, self._last, self._last_file = fsio.join(run_dir, PROGRESS_FILE), every, 0.0, 0.0
        self.file_every = max(every, URI_EVERY_SECONDS) if fsio.is_uri(run_dir) else every

    def write(self, force: bool = False, **fields) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        if _publisher is not None:
            _publisher(fields)
        if force or now - self._last_file >= self.file_every:
            self._last_file = now
            fsio.write_text(self.path, json.dumps(fields))


def read_progress(run_dir: str | os.PathLike) -> dict | None:
    """progress.json of a run (for operators and tests), or None when absent or torn."""
    try:
        return json.loads(fsio.read_text(fsio.join(run_dir, PROGRESS_FILE)))
    except (OSError, ValueError):  # not written yet, or replaced while being read
        return None


class ProgressBoard:
    """The latest position rank 0 published; the trainer runs it as a Ray actor."""

    def __init__(self) -> None:
        self.state: dict | None = None

    def put(self, fields: dict) -> None:
        self.state = dict(fields)

    def get(self) -> dict | None:
        return self.state


class ProgressFollower:
    """A driver-side tqdm bar fed by polling `read` (e.g. a `ProgressBoard`); a context manager."""

    def __init__(self, read: Callable[[], dict | None], total: int, desc: str, enabled: bool = True,
                 poll: float = 1.0) -> None:
        self.read, self.total, self.desc, self.enabled, self.poll = read, total, desc, enabled, poll
        self.last: dict | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> ProgressFollower:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _follow(self) -> None:
        with tqdm(total=self.total, unit="img", desc=self.desc) as bar:
            while True:
                stopping = self._stop.wait(self.poll)
                state = self._read()
                if state:
                    self.last = state
                    bar.n = min(int(state.get("samples_seen", 0)), self.total)
                    bar.set_postfix({k: v for k, v in state.items() if k != "samples_seen"}, refresh=False)
                    bar.refresh()
                if stopping:
                    return

    def _read(self) -> dict | None:
        try:
            return self.read()
        except Exception:  # noqa: BLE001 (a bar must never fail the run it follows)
            return None
