"""The selection-policy contract: a policy decides which entries leave the buffer; it stores no samples.

Everything a policy may provide is declared on `SelectionPolicy` with its default: `Params` (the
pipeline's `buffer.params`), `embeds`, `needs_sample_loss`, `select` (required), `record_losses`,
`state_dict` / `load_state_dict`.
`resize` applies a policy to a buffer; neither the buffer nor the policy calls the other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from streamssl.buffers.protect import Unprotected, effective_protection
from streamssl.checks import finite_numbers

if TYPE_CHECKING:
    from streamssl.buffers.storage import ReplayBuffer


class SelectionPolicy(ABC):
    """Chooses the entries to remove when the buffer is over capacity.

    Every policy has the same signature and a frozen `Params` dataclass of its settings. A policy
    may keep caches between calls (state_dict round-trips them) but its result must not depend on
    them: the same buffer state and generator give the same selection with or without the cache.
    Use one policy instance per buffer.
    """

    # True: the policy ranks raw backbone embeddings (`Method.memory_embeddings`), which the learner
    # writes into `buffer.features` right before each resize, instead of the EMA of the updates'
    # projections (the buffer is then backbone_dim wide)
    embeds: ClassVar[bool] = False
    # True: the policy ranks per-sample losses, which the learner hands to `record_losses` after
    # every update; only methods with `Method.provides_sample_loss` can run it
    needs_sample_loss: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Params:
        """The policy's settings, one field per `buffer.params` key; this base has none."""

        def validate(self) -> None:
            """Raise ConfigError naming `buffer.params.<field>`; subclasses call it and add their ranges."""
            finite_numbers("buffer.params", self)

    def __init__(self, params: Params | None = None) -> None:
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

    def record_losses(self, buffer: ReplayBuffer, slots: Tensor, losses: Tensor) -> None:
        """Per-sample losses (float [n]) of the entries at `slots` from the latest update; default: ignored.

        Called by the learner after every update when `needs_sample_loss` is set. Loss-based state
        is the policy's own (kept by entry uid, saved by `state_dict`), not a cache.
        """
        del buffer, slots, losses

    def state_dict(self) -> dict:
        """Caches worth keeping across a checkpoint; default: none."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state


def resize(buffer: ReplayBuffer, policy: SelectionPolicy, generator: torch.Generator) -> Tensor:
    """Bring the buffer back to capacity, removing the entries the policy selects.

    Entries from the latest `buffer.protect_new` inserts are not offered to the policy (see
    `streamssl.buffers.protect`, also for protected entries beyond capacity).

    Returns:
        LongTensor of the removed entries' slots as they were before the call, in removal order.
    """
    n_remove = len(buffer) - buffer.capacity
    if n_remove <= 0:
        return torch.zeros(0, dtype=torch.long, device=buffer.device)
    delay = effective_protection(buffer.lifespan, buffer.protect_new, buffer.capacity) if buffer.protect_new else 0
    if delay == 0:
        removed = policy.select(buffer, n_remove, generator).to(buffer.device)
    else:
        view = Unprotected(buffer, delay)
        removed = view.rows[policy.select(view, n_remove, generator).to(buffer.device)]
    if removed.numel() != n_remove:
        raise RuntimeError(f"{type(policy).__name__} selected {removed.numel()} entries, not {n_remove}")
    buffer.remove(removed)
    return removed
