"""Exact cosine nearest neighbours of a shrinking set of rows: the machinery behind every greedy removal.

Why fixed point: the greedy removal rule compares nearest-neighbour similarities and breaks ties by
index, and every rank of a global dedup must reach the same removal from the same gathered
features, so similarities must not depend on how or where they were computed. A floating-point
matmul does not promise that: the rounding of one entry depends on the kernel, the blocking, the
thread count and the device, so row i of a [N, N] product can differ in the last bit from the same
row computed alone, and S[i, j] from S[j, i]. We therefore L2-normalize each row, scale it by s
(about 2^26.5, see `fixed_point_scale`) and round to integers, all in float64. Every product and
partial sum of two such rows is then an integer below 2^53 (Cauchy-Schwarz bounds sum |a_d b_d| by
||a|| ||b|| <= (s + sqrt(D)/2)^2), which float64 represents exactly, so the matmul is exact in any
summation order, on any device, in any blocking and thread count, and exactly symmetric. The row
norms are summed in a fixed pairwise order (`_row_norms`), so the grid itself is the same
everywhere too.

What is exact and what is not: the similarity is dot / s^2, the cosine on the grid. It differs
from the float64 cosine of the features by at most `similarity_error_bound(D)` (sqrt(D) / s:
3.4e-7 at D=1024, typically about 1e-8), so the greedy rule on the grid makes the choice of the
exact float64 greedy rule whenever the candidates differ by more than twice that, and always where
they differ by more than 1e-5 (dimensions above about 225,000 are refused). Exact ties on the grid
(mutual nearest neighbours always tie) go to the lowest index.

A `NeighbourGraph` keeps for every row a short list of its top-k neighbours and an upper bound on
its similarity to every live row outside the list. Removing a row only touches rows whose best
neighbour it was; such a row falls back to the next live entry of its list and is rescanned (one
row of similarities) only when no listed entry is left above its bound.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

NEG = float("-inf")
LIST_LEN = 8  # neighbours listed per row: more means fewer rescans, a little more memory and merging
_BLOCK_ELEMS = 1 << 25  # similarity entries materialized at once (256 MiB of float64)
_QUANTIZE_ROWS = 4096
RESOLUTION = 1e-5  # candidates further apart than this are ordered as the exact float64 rule orders them


def fixed_point_scale(dim: int) -> int:
    """Largest scale s with (s + sqrt(D)/2)^2 < 2^53, so integer dot products stay exact in float64."""
    scale = math.floor(2.0 ** 26.5 - math.sqrt(dim) / 2) - 1
    bound = _error_bound(dim, scale)
    if 2 * bound >= RESOLUTION:
        raise ValueError(f"feature dimension {dim} is too large for fixed-point similarity: cosines would be "
                         f"off by up to {bound:.1e}, above the {RESOLUTION / 2:.0e} that keeps the greedy exact")
    return scale


def _error_bound(dim: int, scale: int) -> float:
    # q = s a + e with a the exact unit row and |e_d| <= 1/2 plus at most 1e-7 of float64 normalization
    # error (1e-6 kept as margin), so |q.q'/s^2 - a.a'| <= (|e| + |e'|) / s + |e| |e'| / s^2
    half = 0.5 + 1e-6
    return 2 * half * math.sqrt(dim) / scale + dim * half * half / (scale * scale)


def similarity_error_bound(dim: int) -> float:
    """Largest difference between `similarity` / s^2 and the float64 cosine of the original rows."""
    return _error_bound(dim, fixed_point_scale(dim))


def _row_norms(rows: Tensor) -> Tensor:
    """L2 norms of float64 rows [R, D], summed in one fixed pairwise order on every device and thread count."""
    sq = rows * rows
    while sq.shape[1] > 1:  # elementwise adds only: no reduction kernel chooses the order
        if sq.shape[1] % 2:
            sq = torch.cat([sq, sq.new_zeros(sq.shape[0], 1)], 1)
        sq = sq[:, 0::2] + sq[:, 1::2]
    return sq[:, 0].sqrt()


def quantize(features: Tensor) -> Tensor:
    """L2-normalize each row and round it to integers on the fixed-point grid.

    Only elementwise float64 operations (correctly rounded everywhere) and exact max reductions, so
    the result is bit-identical on every device and thread count, and for a row alone or in a batch.

    Args:
        features: [N, D] floating features, any norm (zero rows stay zero).

    Returns:
        [N, D] float64 holding integers; `similarity` of two such rows is exact.

    Raises:
        ValueError: not 2-D, NaN or infinite entries, or D above about 225,000 (see `fixed_point_scale`).
    """
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {tuple(features.shape)}")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values")
    scale = fixed_point_scale(features.shape[1])
    out = torch.empty(features.shape, dtype=torch.float64, device=features.device)
    for start in range(0, features.shape[0], _QUANTIZE_ROWS):  # bounds the float64 temporaries
        rows = features[start: start + _QUANTIZE_ROWS].double()
        # dividing by the largest entry first keeps the squares far from overflow and underflow
        rows = rows / rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
        out[start: start + _QUANTIZE_ROWS] = torch.round(rows * (scale / _row_norms(rows)[:, None].clamp_min(1e-300)))
    return out


def similarity(a: Tensor, b: Tensor) -> Tensor:
    """Exact fixed-point dot products [Na, Nb] of quantized rows a [Na, D] and b [Nb, D] (float64)."""
    with torch.autocast(a.device.type, enabled=False):  # keep float64: a cast would round the integers
        return a @ b.T


def threshold_units(threshold: float, dim: int) -> float:
    """Smallest integer dot product whose similarity dot / s^2 is >= threshold (exact rational maths)."""
    from fractions import Fraction

    scale = fixed_point_scale(dim)
    return float(math.ceil(Fraction(threshold) * scale * scale))


def top_lists(sims: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k lists (idx, val) and the (k+1)-th value as bound, per row of sims [R, N] (-inf: self/dead)."""
    kk = min(k + 1, sims.shape[1])
    val, idx = sims.topk(kk, dim=1)
    bound = val[:, k] if kk == k + 1 else val.new_full((val.shape[0],), NEG)
    val, idx = _pad(val[:, :k], idx[:, :k], k)
    return idx.masked_fill(val == NEG, -1), val, bound


def _pad(val: Tensor, idx: Tensor, k: int) -> tuple[Tensor, Tensor]:
    missing = k - val.shape[1]
    if missing <= 0:
        return val, idx
    return (torch.cat([val, val.new_full((val.shape[0], missing), NEG)], 1),
            torch.cat([idx, idx.new_full((idx.shape[0], missing), -1)], 1))


def merge_lists(val: Tensor, idx: Tensor, bound: Tensor, new_val: Tensor, new_cols: Tensor,
                k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Merge candidates new_val [R, C] (similarities to rows new_cols [C]) into lists idx, val [R, k].

    Returns the merged (idx, val, bound); what falls off a list raises its bound.
    """
    pos, lists_val, extra = top_lists(torch.cat([val, new_val], 1), k)  # pos in [0, k + C), -1: empty
    listed = idx.gather(1, pos.clamp(0, k - 1))
    lists_idx = torch.where(pos < k, listed, new_cols[(pos - k).clamp_min(0)]).masked_fill(pos < 0, -1)
    return lists_idx, lists_val, torch.maximum(bound, extra)


class NeighbourGraph:
    """Exact nearest neighbours among the live rows of q [N, D] under removals.

    INVARIANT: for every live row i, `best_val[i]` is the largest similarity of i to another live row
    and `best_idx[i]` is a live row attaining it (-1 when i has no live neighbour); every live row
    not in i's list has similarity at most `bound[i]` to i.
    """

    def __init__(self, q: Tensor, idx: Tensor, val: Tensor, bound: Tensor) -> None:
        n = q.shape[0]
        self.q, self.idx, self.val, self.bound = q, idx, val, bound
        self.k = idx.shape[1]
        self.alive = torch.ones(n + 1, dtype=torch.bool, device=q.device)
        self.alive[n] = False  # sentinel: list entry -1 reads as dead
        self.best_val = torch.full((n,), NEG, dtype=q.dtype, device=q.device)
        self.best_idx = torch.full((n,), -1, dtype=torch.long, device=q.device)
        self.rescanned = 0
        self._refresh(torch.arange(n, device=q.device))

    @classmethod
    def build(cls, q: Tensor, k: int = LIST_LEN) -> NeighbourGraph:
        """Top-k lists of all rows of q [N, D], one upper-triangular block of similarities at a time."""
        n = q.shape[0]
        kk = min(k + 1, n)
        val = torch.full((n, kk), NEG, dtype=q.dtype, device=q.device)
        idx = torch.full((n, kk), -1, dtype=torch.long, device=q.device)
        rows = max(64, _BLOCK_ELEMS // max(n, 1))
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            sims = similarity(q[start:stop], q[start:])  # [b, n - start], exact and symmetric
            sims[:, : stop - start].fill_diagonal_(NEG)
            # rows of the block see columns >= start; columns after the block see the block's rows
            v, i = sims.topk(min(kk, sims.shape[1]), dim=1)
            val[start:stop], idx[start:stop] = _merge_raw(val[start:stop], idx[start:stop], v, i + start, kk)
            if stop < n:
                v, i = sims[:, stop - start:].topk(min(kk, stop - start), dim=0)
                val[stop:], idx[stop:] = _merge_raw(val[stop:], idx[stop:], v.T, i.T + start, kk)
        bound = val[:, k] if kk == k + 1 else val.new_full((n,), NEG)
        val, idx = _pad(val[:, :k], idx[:, :k], k)
        return cls(q, idx.masked_fill(val == NEG, -1), val, bound)

    def _refresh(self, rows: Tensor) -> None:
        """Recompute best neighbours of `rows` from their lists, rescanning rows whose list ran dry."""
        idx = self.idx[rows]
        val = self.val[rows].masked_fill(~self.alive[idx], NEG)
        best, arg = val.max(dim=1)
        stale = best < self.bound[rows]
        if stale.any():
            self._rescan(rows[stale])
            idx[stale], best[stale], arg[stale] = self.idx[rows[stale]], self.val[rows[stale], 0], 0
        self.best_val[rows] = best
        self.best_idx[rows] = idx.gather(1, arg[:, None]).squeeze(1).masked_fill(best == NEG, -1)

    def _rescan(self, rows: Tensor) -> None:
        sims = similarity(self.q[rows], self.q)  # [R, N]
        sims.masked_fill_(~self.alive[:-1], NEG)
        sims[torch.arange(rows.numel(), device=rows.device), rows] = NEG
        self.idx[rows], self.val[rows], self.bound[rows] = top_lists(sims, self.k)
        self.rescanned += rows.numel()

    def remove(self, row: int) -> None:
        """Remove one live row and repair the rows whose nearest neighbour it was."""
        self.alive[row] = False
        self.best_val[row] = NEG
        self.best_idx[row] = -1
        affected = torch.nonzero(self.best_idx == row).squeeze(1)
        if affected.numel():
            self._refresh(affected)

    def greedy(self, n_max: int, min_value: float = NEG) -> Tensor:
        """Repeatedly remove the row whose nearest live neighbour is most similar (ties: lowest index).

        Args:
            n_max: most rows to remove.
            min_value: stop once the best similarity (in fixed-point units) is below this.

        Returns:
            LongTensor of removed rows, in removal order.
        """
        removed = []
        for _ in range(n_max):
            row = int(torch.argmax(self.best_val))  # first maximal index: the lowest-index tie
            value = float(self.best_val[row])
            if value == NEG or value < min_value:
                break
            removed.append(row)
            self.remove(row)
        return torch.tensor(removed, dtype=torch.long, device=self.q.device)

    def live_rows(self) -> Tensor:
        return torch.nonzero(self.alive[:-1]).squeeze(1)


def _merge_raw(val: Tensor, idx: Tensor, new_val: Tensor, new_idx: Tensor, kk: int) -> tuple[Tensor, Tensor]:
    cat_val = torch.cat([val, new_val], 1)
    top_val, pos = cat_val.topk(kk, dim=1)
    return top_val, torch.cat([idx, new_idx], 1).gather(1, pos)

