"""FIFO: drop the oldest entries (largest lifespan, ties to the lowest slot)."""

from __future__ import annotations

import torch
from torch import Tensor

from streamssl.buffers.base import SelectionPolicy
from streamssl.buffers.selection import oldest
from streamssl.buffers.storage import ReplayBuffer


class FIFO(SelectionPolicy):
    """First in, first out."""

    def select(self, buffer: ReplayBuffer, n_remove: int, generator: torch.Generator) -> Tensor:
        del generator  # deterministic
        return oldest(buffer.lifespan, max(n_remove, 0))
