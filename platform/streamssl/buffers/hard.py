"""Hard: keep the entries with the highest running loss, a label-free hard-example memory.

Every update's per-sample losses (`StepOutput.sample_loss`, from methods with
`provides_sample_loss`) reach the policy through `record_losses`; each entry's loss is kept as an
EMA keyed by its uid: loss <- alpha * loss + (1 - alpha) * new (the first loss sets it). A resize
removes the entries with the lowest running loss, the ones the model already finds easy, so the
buffer (and with it the replay) concentrates on what the model still gets wrong. Entries never
scored yet rank as hardest (they have not had their chance); ties go to the oldest entry first,
then the lowest slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from streamssl.buffers.base import SelectionPolicy
from streamssl.buffers.storage import ReplayBuffer
from streamssl.checks import in_range


class Hard(SelectionPolicy):
    """Remove the entries whose EMA of the per-sample loss is lowest."""

    needs_sample_loss = True

    @dataclass(frozen=True)
    class Params(SelectionPolicy.Params):
        alpha: float = 0.5  # weight on the old loss in the EMA (as buffer.ema_alpha for features)

        def validate(self) -> None:
            super().validate()
            in_range("buffer.params.alpha", self.alpha, 0, 1, high_open=True)

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.losses: dict[int, float] = {}  # entry uid -> running loss

    def record_losses(self, buffer: ReplayBuffer, slots: Tensor, losses: Tensor) -> None:
        uids = buffer.uids[slots.to(buffer.device)].tolist()
        alpha = self.params.alpha
        for uid, new in zip(uids, losses.detach().float().cpu().tolist()):
            old = self.losses.get(uid)
            self.losses[uid] = new if old is None else alpha * old + (1 - alpha) * new

    def running_losses(self, uids: Tensor) -> Tensor:
        """float64 [n] running loss of each uid, +inf for entries not scored yet."""
        return torch.tensor([self.losses.get(u, math.inf) for u in uids.tolist()], dtype=torch.float64)

    def select(self, buffer: ReplayBuffer, n_remove: int, generator: torch.Generator) -> Tensor:
        del generator  # deterministic
        self._forget_gone(buffer)
        if n_remove <= 0:
            return torch.zeros(0, dtype=torch.long, device=buffer.device)
        order = torch.arange(len(buffer))  # stable sorts: the last key sorted is the first compared
        order = order[torch.sort(-buffer.lifespan.cpu()[order], stable=True).indices]
        order = order[torch.sort(self.running_losses(buffer.uids)[order], stable=True).indices]
        removed = order[:n_remove]
        for uid in buffer.uids[removed.to(buffer.device)].tolist():
            self.losses.pop(uid, None)
        return removed.to(buffer.device)

    def _forget_gone(self, buffer: ReplayBuffer) -> None:
        """Drop losses of entries that left the buffer by other ways (no-replay runs, dedup rounds).

        Entries protected from this resize (uid >= `buffer.inserted` of an Unprotected view) stay.
        """
        present = set(buffer.uids.tolist())
        self.losses = {u: v for u, v in self.losses.items() if u in present or u >= buffer.inserted}

    def state_dict(self) -> dict:
        uids = sorted(self.losses)
        return {"uid": torch.tensor(uids, dtype=torch.long),
                "loss": torch.tensor([self.losses[u] for u in uids], dtype=torch.float64)}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            self.losses = {}
            return
        self.losses = dict(zip(state["uid"].tolist(), state["loss"].tolist()))
