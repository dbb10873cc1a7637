"""Reservoir sampling (Vitter, "Random sampling with a reservoir", ACM TOMS 1985, Algorithm R).

After every resize the buffer is a uniform random sample of all entries ever inserted: entry number
t (1-based, from the buffer's insertion counter) replaces a uniformly chosen member with
probability capacity / t and is dropped otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from streamssl.buffers.base import SelectionPolicy
from streamssl.buffers.storage import ReplayBuffer


class Reservoir(SelectionPolicy):
    """Algorithm R over the stream of inserted entries."""

    def __init__(self, params: SelectionPolicy.Params | None = None) -> None:
        super().__init__(params)
        self.processed: int | None = None  # insertion counter at the last selection

    def select(self, buffer: ReplayBuffer, n_remove: int, generator: torch.Generator) -> Tensor:
        if n_remove <= 0:
            return torch.zeros(0, dtype=torch.long, device=buffer.device)
        capacity = len(buffer) - n_remove
        pending = self._pending(buffer)
        members = torch.nonzero(~pending).squeeze(1).cpu()
        arrivals = torch.nonzero(pending).squeeze(1)
        arrival_uids, order = torch.sort(buffer.uids[arrivals])  # in insertion order
        arrivals, arrival_uids = arrivals[order].cpu(), arrival_uids.cpu()
        removed = []
        if members.numel() > capacity:  # only after outside removals changed the capacity picture
            drop = torch.randperm(members.numel(), generator=generator, device=generator.device).cpu()
            removed += members[drop[: members.numel() - capacity]].tolist()
            members = members[torch.sort(drop[members.numel() - capacity:]).values]
        removed += _algorithm_r(members, arrivals, arrival_uids, capacity, generator)
        self.processed = buffer.inserted
        return torch.tensor(removed, dtype=torch.long, device=buffer.device)

    def _pending(self, buffer: ReplayBuffer) -> Tensor:
        if self.processed is None:  # fresh policy (e.g. after a resume): the latest insert is pending
            return buffer.lifespan == 1
        return buffer.uids >= self.processed

    def state_dict(self) -> dict:
        return {"processed": self.processed}

    def load_state_dict(self, state: dict) -> None:
        self.processed = state["processed"]


def _algorithm_r(members: Tensor, arrivals: Tensor, arrival_uids: Tensor, capacity: int,
                 generator: torch.Generator) -> list[int]:
    """Slots removed while feeding `arrivals` (slots, with their uids) through a reservoir of `members`."""
    slots = members.tolist()
    draws = torch.rand(arrivals.numel(), dtype=torch.float64, generator=generator, device=generator.device)
    removed = []
    for slot, uid, u in zip(arrivals.tolist(), arrival_uids.tolist(), draws.tolist()):
        if len(slots) < capacity:
            slots.append(slot)
            continue
        j = int(u * (uid + 1))  # uid + 1: this entry's number in the stream
        if j < capacity:
            removed.append(slots[j])
            slots[j] = slot
        else:
            removed.append(slot)
    return removed
