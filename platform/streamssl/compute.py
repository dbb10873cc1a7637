"""Compute accounting of a run: FLOPs per update, samples/s, data-wait fraction, peak memory.

Recorded in run.json (`compute`) so that experiments can set accuracy against compute. FLOPs are
counted once, on the first update, by torch's FlopCounterMode (forward and backward of every
matmul and convolution; elementwise ops are not counted), and multiplied by the number of updates:
every update of a run has the same shapes, so the first one stands for all.
"""

from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode


@contextmanager
def count_flops():
    """Counts the FLOPs of the code inside; read `.total` on the yielded counter afterwards."""
    counter = _FlopTotal()
    with FlopCounterMode(display=False) as mode:
        yield counter
    counter.total = int(mode.get_total_flops())


@dataclass
class _FlopTotal:
    total: int = 0


def peak_rss_bytes() -> int:
    """This process's peak resident set size (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def gpu_peak_bytes(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))


@dataclass
class ComputeMeter:
    """Accumulates one worker's data-wait and total loop time and its updates' FLOPs."""

    flops_per_update: int | None = None
    wait_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    samples: int = 0
    updates: int = 0

    @contextmanager
    def waiting(self):
        """Wrap the wait for the next stream batch."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.wait_seconds += time.perf_counter() - t0

    def record(self, samples: int, updates: int) -> None:
        self.samples += samples
        self.updates += updates

    def summary(self, device: torch.device) -> dict:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        per_update = self.flops_per_update
        return {
            "flops_per_update": per_update,
            "flops_total": None if per_update is None else per_update * self.updates,
            "samples_per_s": round(self.samples / elapsed, 2),
            "data_wait_fraction": round(self.wait_seconds / elapsed, 4),
            "peak_rss_bytes": peak_rss_bytes(),
            "gpu_peak_bytes": gpu_peak_bytes(device),
        }
