"""The selection-policy contract: a policy decides which entries leave the buffer; it stores no samples."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from streamssl.buffers.storage import ReplayBuffer


class SelectionPolicy(ABC):
    """Chooses the entries to remove when the buffer is over capacity.

    Every policy has the same signature and a frozen `Params` dataclass of its settings. A policy
    may keep caches between calls (state_dict round-trips them) but its result must not depend on
    them: the same buffer state and generator give the same selection with or without the cache.
    Use one policy instance per buffer.
    """

    @dataclass(frozen=True)
    class Params:
        """Subclasses replace this with their own frozen dataclass."""

    def __init__(self, params: object | None = None) -> None:
        self.params = params if params is not None else type(self).Params()

    @abstractmethod
    def select(self, buffer: ReplayBuffer, n_remove: int, generator: torch.Generator) -> Tensor:
        """Slots to remove, in removal order.

        Args:
            buffer: the buffer to shrink (not modified), or the `buffers.protect.Unprotected` view of
                its removable entries (same attributes) when it protects new entries.
            n_remove: how many entries to remove, in [0, len(buffer)].
            generator: randomness for stochastic policies.

        Returns:
            LongTensor [n_remove] of distinct occupied slots.
        """

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state
