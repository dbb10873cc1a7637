"""Stream progress across processes: rank 0 writes RUN_DIR/progress.json, a driver follows it.

Inside Ray Train the rank-0 loop's own progress bar writes to a worker's stderr, which the driver
does not show (logs are not forwarded, to keep Ray's noise out of the terminal), so the driver
draws the bar from this small file instead.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tqdm import tqdm

from streamssl import fsio

PROGRESS_FILE = "progress.json"


class ProgressWriter:
    """Rewrites the progress file at most every `every` seconds (atomically, `streamssl.fsio`)."""

    def __init__(self, run_dir: Path, every: float = 1.0) -> None:
        self.path, self.every, self._last = Path(run_dir) / PROGRESS_FILE, every, 0.0

    def write(self, force: bool = False, **fields) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        fsio.write_text(self.path, json.dumps(fields))


def read_progress(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):  # not written yet, or replaced while being read
        return None


class ProgressFollower:
    """A driver-side tqdm bar fed by polling rank 0's progress file; use as a context manager."""

    def __init__(self, run_dir: Path, total: int, desc: str, enabled: bool = True, poll: float = 1.0) -> None:
        self.run_dir, self.total, self.desc, self.enabled, self.poll = Path(run_dir), total, desc, enabled, poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> ProgressFollower:
        (self.run_dir / PROGRESS_FILE).unlink(missing_ok=True)  # never show an earlier run's position
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
                state = read_progress(self.run_dir)
                if state:
                    bar.n = min(int(state.get("samples_seen", 0)), self.total)
                    bar.set_postfix({k: v for k, v in state.items() if k != "samples_seen"}, refresh=False)
                    bar.refresh()
                if stopping:
                    return
