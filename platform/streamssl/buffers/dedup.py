"""Global deduplication of the union of the workers' buffers (`dedup.every`): the pure part.

Every worker gathers all buffers' features in (rank, index) order and calls `global_dedup` on the
concatenation; the function is deterministic and its similarities are exact (see `neighbours`), so
every worker computes the same removal whatever its device, BLAS or thread count. It is the
diversity greedy of `selection` with a stop rule.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from streamssl.buffers.neighbours import NeighbourGraph, quantize, threshold_units


def _prepare(features: Tensor, seen: Tensor, ranks: Tensor, threshold: float,
             max_fraction: float) -> tuple[Tensor, int, float]:
    m = features.shape[0] if features.ndim == 2 else -1
    if m < 0:
        raise ValueError(f"features must be [M, D], got shape {tuple(features.shape)}")
    if seen.shape != (m,) or seen.dtype != torch.bool:
        raise ValueError(f"seen must be a bool tensor of shape [{m}], got {seen.dtype} {tuple(seen.shape)}")
    if ranks.shape != (m,):
        raise ValueError(f"ranks must have shape [{m}], got {tuple(ranks.shape)}")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    if not 0.0 <= max_fraction <= 1.0:
        raise ValueError(f"max_fraction must be in [0, 1], got {max_fraction}")
    rows = torch.nonzero(seen).squeeze(1)
    # round() so that 0.29 * 100 counts as 29, not 28.999...
    limit = math.floor(round(max_fraction * m, 9))
    return rows, limit, threshold_units(threshold, features.shape[1])


def global_dedup(features: Tensor, seen: Tensor, ranks: Tensor, threshold: float,
                 max_fraction: float) -> Tensor:
    """Near-duplicates to drop from the union of the workers' buffers, in removal order.

    Among seen entries only (unseen ones are neither candidates nor neighbours), greedily removes the
    entry whose nearest remaining seen neighbour is most similar, while that cosine similarity is
    >= threshold and fewer than floor(max_fraction * M) entries are gone; ties go to the lowest
    index. The removal depends on the ranks only through the index order of the concatenation:
    `ranks` is validated and left to the caller, who maps removed indices back to (rank, slot).
    The similarity is the fixed-point cosine of `select_diverse` (at most 3.4e-7 from the float64
    cosine at D=1024), compared with the threshold in exact rational arithmetic. Removals are
    identical on every rank, and equal the exact float64 greedy rule's except where two candidates'
    cosines, or a candidate's cosine and the threshold, differ by less than 1e-5 (exact duplicates
    score 1 within that bound, so ask for them with a threshold such as 0.99999, not 1.0).

    Args:
        features: [M, D] features of all buffers concatenated in (rank, index) order.
        seen: [M] bool.
        ranks: [M] long, the rank that owns each entry.
        threshold: similarity at or above which an entry counts as a duplicate.
        max_fraction: cap on removals as a fraction of M (seen or not).

    Returns:
        LongTensor of indices into the concatenation.

    Raises:
        ValueError: on mismatched shapes, non-finite features or threshold, max_fraction outside [0, 1].
    """
    rows, limit, min_value = _prepare(features, seen, ranks, threshold, max_fraction)
    if limit == 0 or rows.numel() < 2:
        return rows[:0]
    graph = NeighbourGraph.build(quantize(features[rows]))
    return rows[graph.greedy(limit, min_value)]

