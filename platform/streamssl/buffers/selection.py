"""MinRed / Imai diversity selection: which buffer entries to drop so that the rest stays diverse.

Purushwalkam et al., "The Challenges of Continuous Self-Supervised Learning", ECCV 2022
(https://arxiv.org/abs/2203.12710), as used by Imai et al., ACCV 2024:
among seen entries, repeatedly remove the one whose nearest remaining neighbour is most similar
(cosine), ties to the lowest index; with fewer than 2 * n_remove seen entries, remove the oldest.
Similarities are fixed-point cosines computed exactly (see `neighbours`): every way of computing
them (one shot, incrementally across stream batches, on any device or thread count) gives the same
numbers bit for bit, hence the same removals, and those removals are the exact float64 greedy
rule's wherever the competing candidates differ by more than 1e-5.
"""

from __future__ import annotations

import torch
from torch import Tensor

from streamssl.buffers.neighbours import NeighbourGraph, quantize


def oldest(lifespan: Tensor, n_remove: int) -> Tensor:
    """The n_remove entries with the largest lifespan, ties to the lowest index, in that order.

    Args:
        lifespan: [M] long, stream steps each entry has spent in the buffer.
        n_remove: how many to return (at most M).
    """
    order = torch.sort(lifespan, descending=True, stable=True).indices  # stable: lower index first
    return order[:n_remove]


def check_inputs(features: Tensor, n_remove: int, seen: Tensor, lifespan: Tensor) -> None:
    m = features.shape[0] if features.ndim == 2 else -1
    if m < 0:
        raise ValueError(f"features must be [M, D], got shape {tuple(features.shape)}")
    if seen.shape != (m,) or seen.dtype != torch.bool:
        raise ValueError(f"seen must be a bool tensor of shape [{m}], got {seen.dtype} {tuple(seen.shape)}")
    if lifespan.shape != (m,):
        raise ValueError(f"lifespan must have shape [{m}], got {tuple(lifespan.shape)}")
    if not 0 <= n_remove <= m:
        raise ValueError(f"n_remove must be in [0, {m}], got {n_remove}")


def select_diverse(features: Tensor, n_remove: int, seen: Tensor, lifespan: Tensor) -> Tensor:
    """Entries to remove so that the buffer stays diverse, in removal order.

    Similarity is the cosine of the features on a fixed-point grid (at most 3.4e-7 from the float64
    cosine at D=1024, see `neighbours.similarity_error_bound`), computed exactly, so the result does
    not depend on device, blocking or thread count, and mutual nearest neighbours tie exactly. The
    removal order is the exact float64 greedy rule's except where two candidates' nearest-neighbour
    cosines differ by less than 1e-5 (then either may go first, the same one everywhere).

    Cost: one pass over the upper triangle of the float64 similarity matrix in row blocks (never the
    full [M, M] matrix), then per removal O(M) plus a rescan for the rare row whose listed
    neighbours are all gone.

    Args:
        features: [M, D] features (normalized inside; unseen rows are ignored).
        n_remove: number of entries to remove.
        seen: [M] bool, entries whose feature has been set.
        lifespan: [M] long, used by the oldest-first fallback.

    Returns:
        LongTensor [n_remove] of indices into the M entries.

    Raises:
        ValueError: on mismatched shapes, non-finite features or n_remove outside [0, M].
    """
    check_inputs(features, n_remove, seen, lifespan)
    if int(seen.sum()) < 2 * n_remove:
        return oldest(lifespan, n_remove)
    rows = torch.nonzero(seen).squeeze(1)
    graph = NeighbourGraph.build(quantize(features[rows]))
    return rows[graph.greedy(n_remove)]

