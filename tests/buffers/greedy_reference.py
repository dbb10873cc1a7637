"""References for the diversity greedy: the rule itself in float64, and the naive procedure on the grid.

`exact_greedy` is the specification: float64 cosines of the L2-normalized features, repeatedly
remove the row whose nearest remaining row is most similar, ties to the lowest index.
`select_diverse` and `global_dedup` must agree with it except where candidates differ by less
than TOLERANCE; `check_near_greedy` checks exactly that on any data. The `*_naive` functions run
the naive procedure (full matrix, full scan per removal) on the package's fixed-point grid: the
fast code must equal them bit for bit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from streamssl.buffers import oldest
from streamssl.buffers.neighbours import quantize, similarity, threshold_units

TOLERANCE = 1e-5
NEG = float("-inf")


def naive_greedy(q: Tensor, n_max: int, min_value: float = NEG) -> Tensor:
    """Reference greedy on the grid: a full [N, N] similarity matrix and a full row-max scan per removal."""
    sims = similarity(q, q)  # exact, hence exactly symmetric
    sims.fill_diagonal_(NEG)
    removed = []
    for _ in range(n_max):
        row_max = sims.max(dim=1).values
        row = int(torch.argmax(row_max))
        value = float(row_max[row])
        if value == NEG or value < min_value:
            break
        removed.append(row)
        sims[row, :] = NEG
        sims[:, row] = NEG
    return torch.tensor(removed, dtype=torch.long, device=q.device)


def exact_cosines(features: Tensor) -> Tensor:
    """[N, N] float64 cosines, exactly symmetric, -inf on the diagonal."""
    x = F.normalize(features.double(), dim=1)
    sims = x @ x.T
    sims = (sims + sims.T) / 2  # a + b == b + a: mutual neighbours tie exactly, as the rule says
    return sims.fill_diagonal_(NEG)


def exact_greedy(features: Tensor, n_max: int, threshold: float = NEG) -> Tensor:
    """The greedy rule in float64 on rows [N, D]: removed rows in removal order."""
    sims = exact_cosines(features)
    removed = []
    for _ in range(n_max):
        row_max = sims.max(dim=1).values
        row = int(torch.argmax(row_max))  # first maximal index: ties to the lowest index
        if row_max[row] == NEG or row_max[row] < threshold:
            break
        removed.append(row)
        sims[row, :] = NEG
        sims[:, row] = NEG
    return torch.tensor(removed, dtype=torch.long)


def dedup_limit(m: int, max_fraction: float) -> int:
    return math.floor(round(max_fraction * m, 9))


def select_diverse_exact(features: Tensor, n_remove: int, seen: Tensor, lifespan: Tensor) -> Tensor:
    if int(seen.sum()) < 2 * n_remove:
        return oldest(lifespan, n_remove)
    rows = torch.nonzero(seen).squeeze(1)
    return rows[exact_greedy(features[rows], n_remove)]


def global_dedup_exact(features: Tensor, seen: Tensor, threshold: float, max_fraction: float) -> Tensor:
    rows = torch.nonzero(seen).squeeze(1)
    return rows[exact_greedy(features[rows], dedup_limit(features.shape[0], max_fraction), threshold)]


def select_diverse_naive(features: Tensor, n_remove: int, seen: Tensor, lifespan: Tensor) -> Tensor:
    if int(seen.sum()) < 2 * n_remove:
        return oldest(lifespan, n_remove)
    rows = torch.nonzero(seen).squeeze(1)
    return rows[naive_greedy(quantize(features[rows]), n_remove)]


def global_dedup_naive(features: Tensor, seen: Tensor, threshold: float, max_fraction: float) -> Tensor:
    rows = torch.nonzero(seen).squeeze(1)
    limit = dedup_limit(features.shape[0], max_fraction)
    if limit == 0 or rows.numel() < 2:
        return rows[:0]
    return rows[naive_greedy(quantize(features[rows]), limit, threshold_units(threshold, features.shape[1]))]


def check_near_greedy(features: Tensor, seen: Tensor, removed: Tensor, n_max: int,
                      threshold: float = NEG) -> None:
    """Assert that `removed` is a run of the float64 rule up to TOLERANCE.

    Every removed row is a live seen row whose nearest-neighbour cosine is within TOLERANCE of the
    best one and not below threshold - TOLERANCE; the run ends at n_max or once the best cosine left
    is below threshold + TOLERANCE.
    """
    rows = torch.nonzero(seen).squeeze(1)
    position = {int(r): i for i, r in enumerate(rows.tolist())}
    sims = exact_cosines(features[rows])
    for step, row in enumerate(removed.tolist()):
        assert row in position, f"step {step}: row {row} is unseen or not a row"
        row_max = sims.max(dim=1).values
        best, got = float(row_max.max()), float(row_max[position[row]])
        assert got > NEG, f"step {step}: row {row} was already removed"
        assert got >= best - TOLERANCE, f"step {step}: row {row} at {got!r}, but the best is {best!r}"
        assert got >= threshold - TOLERANCE, f"step {step}: row {row} at {got!r}, below the threshold"
        sims[position[row], :] = NEG
        sims[:, position[row]] = NEG
    if removed.numel() < n_max:
        assert float(sims.max()) < threshold + TOLERANCE, "stopped while a candidate above the threshold was left"


def near_tie_pairs(n_pairs: int, dim: int, seed: int, base: float = 0.95,
                   gap: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Pairs of rows whose cosines are base, base + gap, ... (shuffled), far from every other row.

    Returns:
        (features [2 * n_pairs, dim] float32 with random norms, expected removal order of the exact
        rule: the lower row of each pair, pairs by decreasing cosine).
    """
    g = torch.Generator().manual_seed(seed)
    cos = base + gap * torch.randperm(n_pairs, generator=g).double()
    u = F.normalize(torch.randn(n_pairs, dim, generator=g, dtype=torch.float64), dim=1)
    v = torch.randn(n_pairs, dim, generator=g, dtype=torch.float64)
    v = F.normalize(v - (v * u).sum(1, keepdim=True) * u, dim=1)  # orthogonal to u
    pairs = torch.stack([u, cos[:, None] * u + (1 - cos[:, None] ** 2).sqrt() * v], 1).view(2 * n_pairs, dim)
    place = torch.randperm(2 * n_pairs, generator=g)  # row place[i] holds pair member i
    features = torch.empty_like(pairs)
    features[place] = pairs * (0.5 + 4 * torch.rand(2 * n_pairs, 1, generator=g, dtype=torch.float64))
    lower = place.view(n_pairs, 2).min(dim=1).values
    return features.float(), lower[torch.argsort(cos, descending=True)]


def clusters(m: int, dim: int, n_clusters: int, spread: float, seed: int) -> Tensor:
    """[m, dim] float32 rows around n_clusters random centres: many cosines within 1e-4 of each other."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=g)
    which = torch.randint(0, n_clusters, (m,), generator=g)
    return (centres[which] + spread * torch.randn(m, dim, generator=g)) * (1 + torch.rand(m, 1, generator=g))
