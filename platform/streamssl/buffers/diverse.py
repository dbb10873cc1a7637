"""Diverse: MinRed's removal rule with nearest neighbours kept across stream batches.

Purushwalkam et al., ECCV 2022 (https://arxiv.org/abs/2203.12710), as used by Imai et al., ACCV 2024;
the rule is `select_diverse`. Between two resizes only some entries change: the new ones and those
whose features were updated. The policy keeps every entry's neighbour list from the previous resize
(keyed by the buffer's entry uids, checked against its feature stamps), computes similarity rows
for the changed entries only, merges them into the unchanged entries' lists, and runs the same
greedy. Similarities are exact, so the result equals `select_diverse` on the same buffer state,
with or without the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from streamssl.buffers.base import SelectionPolicy
from streamssl.buffers.neighbours import (
    LIST_LEN,
    NEG,
    NeighbourGraph,
    merge_lists,
    quantize,
    similarity,
    top_lists,
)
from streamssl.buffers.selection import oldest
from streamssl.buffers.storage import ReplayBuffer
from streamssl.checks import in_range

_CACHE_KEYS = ("uid", "stamp", "nbr_uid", "val", "bound")


class Diverse(SelectionPolicy):
    """Remove the seen entry whose nearest neighbour is most similar, one at a time."""

    @dataclass(frozen=True)
    class Params(SelectionPolicy.Params):
        neighbours: int = LIST_LEN  # top-k list kept per entry
        rebuild_fraction: float = 0.25  # above this fraction of changed rows, rebuilding is cheaper

        def validate(self) -> None:
            super().validate()
            in_range("buffer.params.neighbours", self.neighbours, 1)
            in_range("buffer.params.rebuild_fraction", self.rebuild_fraction, 0, 1)

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._cache: dict[str, Tensor] | None = None
        self.last_stats: dict[str, int] = {}  # rows whose similarities the last call computed

    def select(self, buffer: ReplayBuffer, n_remove: int, generator: torch.Generator) -> Tensor:
        del generator  # deterministic
        if n_remove <= 0:
            return torch.zeros(0, dtype=torch.long, device=buffer.device)
        if int(buffer.seen.sum()) < 2 * n_remove:
            return oldest(buffer.lifespan, n_remove)
        rows = torch.nonzero(buffer.seen).squeeze(1)
        uid, stamp = buffer.uids[rows], buffer.feature_stamps[rows]
        kept, at = self._match(uid, stamp)
        graph = self._graph(self._quantized(buffer.features, rows, kept, at), kept, at, uid)
        removed = graph.greedy(n_remove)
        self.last_stats["rescanned"] = graph.rescanned
        self._cache = _snapshot(graph, uid, stamp)
        return rows[removed]

    def _match(self, uid: Tensor, stamp: Tensor) -> tuple[Tensor, Tensor]:
        """Rows [N] unchanged since the cache was taken (same uid and feature stamp), and their cache rows."""
        cache = self._cache
        if cache is None or cache["uid"].numel() == 0 or cache["nbr_uid"].shape[1] != self.params.neighbours:
            return torch.zeros_like(uid, dtype=torch.bool), torch.zeros_like(uid)
        self._cache = cache = {key: t.to(uid.device) for key, t in cache.items()}
        at = torch.searchsorted(cache["uid"], uid).clamp_max(cache["uid"].numel() - 1)
        return (cache["uid"][at] == uid) & (cache["stamp"][at] == stamp), at

    def _quantized(self, features: Tensor, rows: Tensor, kept: Tensor, at: Tensor) -> Tensor:
        """Fixed-point features [N, D] of the seen rows: cached for unchanged rows, fresh for the others."""
        if self._cache is None or "q" not in self._cache:
            return quantize(features[rows])
        # one row gather (changed rows fetch a placeholder row and are overwritten)
        q = self._cache["q"].index_select(0, torch.where(kept, self._cache["row"][at], 0))
        changed = torch.nonzero(~kept).squeeze(1)
        q[changed] = quantize(features[rows[changed]])  # per-row maths: the numbers a full quantize gives
        return q

    def _graph(self, q: Tensor, kept: Tensor, at: Tensor, uid: Tensor) -> NeighbourGraph:
        """Neighbour lists of the seen rows, reusing the cached lists of unchanged rows."""
        k, n = self.params.neighbours, uid.numel()
        changed = torch.nonzero(~kept).squeeze(1)
        computed = n if changed.numel() > self.params.rebuild_fraction * n else changed.numel()
        self.last_stats = {"rows": n, "changed": changed.numel(), "computed": computed}
        if computed == n:
            return NeighbourGraph.build(q, k)
        idx, val, bound = self._restore(kept, at, uid)
        if changed.numel():
            sims = similarity(q[changed], q)  # [C, N]
            sims[torch.arange(changed.numel(), device=q.device), changed] = NEG
            idx[changed], val[changed], bound[changed] = top_lists(sims, k)
            old = torch.nonzero(kept).squeeze(1)
            # the similarity of an old row to a changed one is the transposed entry: exact symmetry
            idx[old], val[old], bound[old] = merge_lists(val[old], idx[old], bound[old], sims[:, old].T,
                                                         changed, k)
        return NeighbourGraph(q, idx, val, bound)

    def _restore(self, kept: Tensor, at: Tensor, uid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Cached lists of kept rows in current row numbers; a neighbour that changed or left is dropped."""
        n, k, cache = uid.numel(), self.params.neighbours, self._cache
        idx = torch.full((n, k), -1, dtype=torch.long, device=uid.device)
        val = torch.full((n, k), NEG, dtype=torch.float64, device=uid.device)  # fixed-point units
        bound = torch.full((n,), NEG, dtype=torch.float64, device=uid.device)
        at = at[kept]
        uid_sorted, order = torch.sort(uid)
        nbr = cache["nbr_uid"][at]
        where = torch.searchsorted(uid_sorted, nbr).clamp_max(n - 1)
        pos = order[where]
        hit = (uid_sorted[where] == nbr) & (nbr >= 0) & kept[pos]
        idx[kept] = torch.where(hit, pos, -1)
        val[kept] = torch.where(hit, cache["val"][at], NEG)
        bound[kept] = cache["bound"][at]
        return idx, val, bound

    def state_dict(self) -> dict:
        """The neighbour lists; the fixed-point features are recomputed after loading, not saved."""
        if self._cache is None:
            return {}
        return {key: self._cache[key].cpu().clone() for key in _CACHE_KEYS}

    def load_state_dict(self, state: dict) -> None:
        # float32 lists come from the older, coarser grid: other units, so rebuild instead
        fresh = bool(state) and state["val"].dtype == torch.float64
        self._cache = {key: state[key] for key in _CACHE_KEYS} if fresh else None


def _snapshot(graph: NeighbourGraph, uid: Tensor, stamp: Tensor) -> dict[str, Tensor]:
    """The live rows' lists keyed by uid (sorted), so the next call can find them after compaction."""
    live = graph.live_rows()
    idx = graph.idx[live]
    ok = graph.alive[idx]  # -1 reads the dead sentinel
    nbr_uid = torch.where(ok, uid[idx.clamp_min(0)], -1)
    val = torch.where(ok, graph.val[live], NEG)
    live_uid, order = torch.sort(uid[live])
    # q is kept whole (dead rows included) to avoid a copy; "row" points into it
    return {"uid": live_uid, "stamp": stamp[live][order], "nbr_uid": nbr_uid[order], "val": val[order],
            "bound": graph.bound[live][order], "row": live[order], "q": graph.q}
