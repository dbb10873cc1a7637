"""PSA, the part-and-select algorithm (Salomon et al. 2013), as SCALE's memory selection.

Salomon, Avigad, Goldvard, Schuetze, "PSA - a new scalable space partition based selection
algorithm for MOEAs", EVOLVE II, 2013 (https://doi.org/10.1007/978-3-642-31519-0_9); SCALE keeps
the PSA subset of the backbone embeddings of memory + new samples (Yu et al. 2023, SCALE).

Partition: start from the points' bounding box; repeatedly take the cell whose bounding box is
widest (largest extent along its widest dimension) and split it at the midpoint of that dimension
(points below the midpoint go left), until there are M cells; every cell's box is the tight box of
its points. Selection: per cell, the point closest (Euclidean) to its box centre.

Splitting the widest cell first means the split cells are exactly the M - 1 widest nodes of the
full split tree (a child is never wider than its parent, so the widest nodes include all their
ancestors). `psa_select` therefore grows the tree in rounds, splitting every not-yet-split node
among the M - 1 widest found so far in one batched pass (segment min/max with scatter_reduce), and
stops once those are all split: a few tensor passes per tree level instead of M - 1 sequential
splits. Ties between equally wide cells go to the one created first.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from streamssl.buffers.base import SelectionPolicy
from streamssl.buffers.storage import ReplayBuffer


def psa_select(points: Tensor, m: int) -> Tensor:
    """Indices of the M points PSA keeps.

    Args:
        points: (N, D) float embeddings.
        m: how many to keep, >= 1.

    Returns:
        (min(m, N),) sorted long indices into points. When fewer than M cells can be made (fewer
        than M distinct points), the remaining slots go to the lowest-index unselected points.
    """
    n = points.shape[0]
    if points.ndim != 2 or m < 1:
        raise ValueError(f"psa_select: points must be (N, D) and m >= 1, got {tuple(points.shape)} and m={m}")
    if m >= n:
        return torch.arange(n, device=points.device)
    tree = _SplitTree(points)
    while tree.grow(m - 1):
        pass
    return _fill(tree.representatives(tree.widest(m - 1)), n, m)


class _SplitTree:
    """Nodes of the PSA split tree in creation order (a parent before its children).

    `path[r, p]` is the node holding point p after r rounds of splitting; every node's box is the
    tight box of its points.
    """

    def __init__(self, points: Tensor) -> None:
        self.x = points
        self.path = torch.zeros(1, points.shape[0], dtype=torch.long, device=points.device)
        self.lo, self.hi = points.amin(0, keepdim=True), points.amax(0, keepdim=True)  # (nodes, D) boxes
        self.split = torch.zeros(1, dtype=torch.bool, device=points.device)

    def widths(self) -> tuple[Tensor, Tensor, Tensor]:
        """Per node: extent along the widest dimension (0: cannot be split), that dimension, its midpoint."""
        extent, dim = (self.hi - self.lo).max(dim=1)
        rows = torch.arange(dim.numel(), device=dim.device)
        lo, hi = self.lo[rows, dim], self.hi[rows, dim]
        mid = (lo + hi) / 2
        # boxes too thin for a float midpoint strictly above their low side cannot be split
        return torch.where(mid > lo, extent, torch.zeros_like(extent)), dim, mid

    def widest(self, k: int) -> Tensor:
        """The k widest splittable nodes (ties: the earlier node), as a bool mask over the nodes."""
        extent = self.widths()[0]
        order = torch.argsort(-extent, stable=True)[:k]
        chosen = torch.zeros_like(self.split)
        chosen[order[extent[order] > 0]] = True
        return chosen

    def grow(self, k: int) -> bool:
        """Split every unsplit node among the k widest; False when there is none.

        A node outside the k widest can never re-enter them (new nodes only add competitors), so
        only these are split; splitting one that later drops out is harmless, since the cells are
        read off the final k widest by `representatives`.
        """
        todo = torch.nonzero(self.widest(k) & ~self.split).squeeze(1)
        if todo.numel() == 0:
            return False
        _, dim, mid = self.widths()
        leaf, base = self.path[-1], self.split.numel()
        slot = torch.full((base,), -1, dtype=torch.long, device=leaf.device)
        slot[todo] = torch.arange(todo.numel(), device=todo.device)
        moving = torch.nonzero(slot[leaf] >= 0).squeeze(1)  # points of the nodes being split
        node = leaf[moving]
        right = self.x[moving, dim[node]] >= mid[node]  # below the midpoint goes left, as Salomon et al.
        leaf = leaf.clone()
        leaf[moving] = base + 2 * slot[node] + right.long()
        self.path = torch.cat([self.path, leaf.unsqueeze(0)])
        self.split[todo] = True
        self._add_boxes(2 * todo.numel(), moving, leaf[moving] - base)
        return True

    def _add_boxes(self, count: int, members: Tensor, index: Tensor) -> None:
        """Append `count` nodes; member point p belongs to new node index[p] (both children are non-empty)."""
        d = self.x.shape[1]
        index = index.unsqueeze(1).expand(-1, d)
        lo = self.x.new_full((count, d), float("inf")).scatter_reduce(0, index, self.x[members], "amin")
        hi = self.x.new_full((count, d), float("-inf")).scatter_reduce(0, index, self.x[members], "amax")
        self.lo, self.hi = torch.cat([self.lo, lo]), torch.cat([self.hi, hi])
        self.split = torch.cat([self.split, torch.zeros(count, dtype=torch.bool, device=self.split.device)])

    def representatives(self, splits: Tensor) -> Tensor:
        """Per cell of the partition made by splitting the nodes in `splits`, the point closest to its box centre.

        A point's cell is the first node on its root path that is not split (`splits` holds every
        ancestor of a split node, since a child is never wider than its parent). Ties: lowest index.
        """
        n = self.x.shape[0]
        unsplit = ~splits[self.path]  # (rounds + 1, N)
        cell = self.path.gather(0, unsplit.long().argmax(0, keepdim=True)).squeeze(0)
        dist = ((self.x - (self.lo[cell] + self.hi[cell]) / 2) ** 2).sum(1)  # squared: same argmin
        nodes = self.split.numel()
        best = dist.new_full((nodes,), float("inf")).scatter_reduce(0, cell, dist, "amin")
        hit = dist == best[cell]
        index = torch.arange(n, device=self.x.device)
        first = torch.full((nodes,), n, device=self.x.device).scatter_reduce(0, cell[hit], index[hit], "amin")
        return first[first < n]


def _fill(keep: Tensor, n: int, m: int) -> Tensor:
    """Sorted keep indices, topped up to m with the lowest unselected indices (degenerate inputs)."""
    if keep.numel() < m:
        free = torch.ones(n, dtype=torch.bool, device=keep.device)
        free[keep] = False
        keep = torch.cat([keep, torch.nonzero(free).squeeze(1)[: m - keep.numel()]])
    return torch.sort(keep).values


class PSA(SelectionPolicy):
    """Keep the PSA subset of the buffer's entries by their backbone embeddings.

    `embeds = True` tells the learner to write fresh, raw (unnormalized) backbone embeddings of
    every entry into `buffer.features` right before each resize (and to feed the buffer no EMA
    features), so the selection sees the current model as SCALE's memory update does.
    """

    embeds: ClassVar[bool] = True

    def select(self, buffer: ReplayBuffer, n_remove: int, generator: torch.Generator) -> Tensor:
        del generator  # deterministic
        if n_remove <= 0:
            return torch.zeros(0, dtype=torch.long, device=buffer.device)
        keep = psa_select(buffer.features.float(), len(buffer) - n_remove)
        removed = torch.ones(len(buffer), dtype=torch.bool, device=buffer.device)
        removed[keep.to(buffer.device)] = False
        return torch.nonzero(removed).squeeze(1)
