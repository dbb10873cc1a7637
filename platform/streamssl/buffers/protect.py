"""Protection of new entries (`buffer.protect_new`): what a resize may remove, for every policy at once.

The authors' DataLoader prefetches stream batches, so a new batch is still unseen at its first
resize and always survives it; streamssl's synchronous loop lets a new near-duplicate go at once.
With protect_new = P, entries from the latest P inserts cannot be removed by a resize. The buffer
hands the policy an `Unprotected` view instead of itself: the other entries, with the clock set
back P inserts (lifespans minus P, `inserted` at the first protected uid). The view is then
exactly the buffer a P = 0 run would hold if every batch arrived P stream batches later with
P * B fewer places, so every policy (FIFO, reservoir, diverse with its cache, PSA) applies its
own rule unchanged to the entries that are old enough.

When the protected entries alone exceed the capacity, protection yields from the oldest insert
on: P is lowered until the rest can absorb the removal, so the buffer always ends at capacity
(validation rejects buffer.protect_new x learner.stream_batch > buffer.size, so pipelines never
reach this). Only resizes honour protection; global dedup rounds do not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from streamssl.buffers.storage import ReplayBuffer


def effective_protection(lifespan: Tensor, protect_new: int, capacity: int) -> int:
    """The largest P' <= protect_new whose protected entries (lifespan <= P') fit in `capacity`."""
    for p in range(protect_new, 0, -1):
        if int((lifespan <= p).sum()) <= capacity:
            return p
    return 0


class Unprotected:
    """Read-only view of a buffer's removable entries, with the attributes a policy reads.

    `rows` are their slots in the buffer (ascending, so ties to the lowest slot keep their order);
    a policy's answer, indices into the view, maps back as `rows[answer]`.
    """

    def __init__(self, buffer: ReplayBuffer, delay: int) -> None:
        lifespan = buffer.lifespan
        removable = lifespan > delay
        self.rows = torch.nonzero(removable).squeeze(1)
        self.device = buffer.device
        self.feature_dim = buffer.feature_dim
        self.lifespan = lifespan[self.rows] - delay
        self.features = buffer.features[self.rows]
        self.seen = buffer.seen[self.rows]
        self.uids = buffer.uids[self.rows]
        self.feature_stamps = buffer.feature_stamps[self.rows]
        self.labels = buffer.labels[self.rows]
        protected_uids = buffer.uids[~removable]
        # uids grow with insertion, so the view has "inserted" everything before the first protected entry
        self.inserted = int(protected_uids.min()) if protected_uids.numel() else buffer.inserted

    def __len__(self) -> int:
        return self.rows.numel()
