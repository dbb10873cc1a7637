"""One round of global deduplication across the workers' buffers: the collective part.

Every rank calls `global_dedup_round` at the same stream step. The ranks gather all buffers'
features, seen flags and ids in (rank, slot) order, each runs the deterministic pure
`global_dedup` on the identical concatenation, and each deletes only its own removed entries. Its
similarities are exact integers on a fixed-point grid, so all ranks agree on the removal without a
further exchange whatever their device, BLAS or thread count. No rank reads extra data: the buffers
refill from the following stream batches, so step counts stay equal.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from streamssl import distributed
from streamssl.buffers.dedup import global_dedup
from streamssl.buffers.storage import ReplayBuffer


def global_dedup_round(buffer: ReplayBuffer, threshold: float, max_fraction: float) -> dict:
    """Remove the union's near-duplicates from this rank's buffer; a collective on every rank.

    Args:
        buffer: this rank's buffer (its slots must not change between the ranks' calls).
        threshold: cosine similarity at or above which a seen entry counts as a duplicate.
        max_fraction: cap on removals as a fraction of the union's entries (seen or not).

    Returns:
        {"removed_per_rank": [int] * W, "removed_ids": W lists of the removed entries' `uids`
        in removal order, "bytes_exchanged": bytes this rank received (padding and counts
        included; 0 at world size 1), "seconds": wall time of the round on this rank}.

    Raises:
        ValueError: threshold or max_fraction out of range (see `global_dedup`); every rank raises
        alike, since all see the same arguments and the same gathered tensors.
    """
    start = time.perf_counter()
    features, seen, uids, counts = _gather_buffers(buffer)
    owners = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(features.device)
    removed = global_dedup(features, seen, owners, threshold, max_fraction)
    me = distributed.rank()
    lo = sum(counts[:me])
    mine = removed[(removed >= lo) & (removed < lo + counts[me])] - lo
    buffer.remove(mine)
    removed_owners = owners[removed]
    return {
        "removed_per_rank": torch.bincount(removed_owners, minlength=len(counts)).tolist(),
        "removed_ids": [uids[removed[removed_owners == r]].tolist() for r in range(len(counts))],
        "bytes_exchanged": _bytes_received(counts, features, seen, uids),
        "seconds": time.perf_counter() - start,
    }


def _gather_buffers(buffer: ReplayBuffer) -> tuple[Tensor, Tensor, Tensor, list[int]]:
    """All ranks' (features [M, D], seen [M], uids [M]) in (rank, slot) order, and the per-rank counts."""
    features, counts = distributed.all_gather_varlen(buffer.features)
    seen, _ = distributed.all_gather_varlen(buffer.seen, counts)
    uids, _ = distributed.all_gather_varlen(buffer.uids, counts)
    return features, seen, uids, counts


def _bytes_received(counts: list[int], *gathered: Tensor) -> int:
    """Bytes the padded gathers delivered to this rank, plus the count gather (0 at world size 1)."""
    world = len(counts)
    if world == 1:
        return 0
    per_row = sum(math.prod(t.shape[1:]) * t.element_size() for t in gathered)
    return world * max(counts) * per_row + world * 8
