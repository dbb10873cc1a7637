"""Density-weighted replay draws (`learner.replay_weighting: density`): label-free long-tail reweighting.

An entry's local density is the mean cosine similarity of its buffer feature (the EMA of its
projections; raw embeddings under PSA, normalized here) to its k nearest seen neighbours in the
buffer, mapped to [0, 1] as (1 + cos) / 2. A k-nearest-neighbour estimate rather than a kernel
density: it has no bandwidth to tune, and it is the same similarity the diverse policy ranks by.
Replay draws (without replacement) take entry i with probability proportional to

    w_i = 1 / (density_i + EPS)

so entries of crowded regions (the head classes of a long-tailed stream, runs of near-duplicate
frames) are replayed less and isolated ones more; EPS bounds the ratio of two weights by
(1 + EPS) / EPS. Entries with no feature yet (never trained on) get the mean weight of the
seen ones, and every entry weighs the same while fewer than two are seen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from streamssl.buffers.storage import ReplayBuffer

DENSITY_K = 10  # neighbours averaged; fewer when fewer entries are seen
EPS = 0.05


def local_density(features: Tensor, seen: Tensor, k: int = DENSITY_K) -> Tensor:
    """float32 [N]: (1 + mean cosine to the k nearest other seen entries) / 2; NaN for unseen rows."""
    out = torch.full((features.shape[0],), float("nan"), device=features.device)
    rows = torch.nonzero(seen).squeeze(1)
    if rows.numel() < 2:
        return out
    z = F.normalize(features[rows].float(), dim=1)
    sims = z @ z.T
    sims.fill_diagonal_(-float("inf"))
    top = sims.topk(min(k, rows.numel() - 1), dim=1).values
    out[rows] = (1 + top.mean(1)) / 2
    return out


def replay_weights(features: Tensor, seen: Tensor, k: int = DENSITY_K) -> Tensor:
    """float64 [N] unnormalized draw weights 1 / (density + EPS); see the module docstring for unseen rows."""
    density = local_density(features, seen, k).double().cpu()
    weights = 1.0 / (density + EPS)
    known = ~torch.isnan(weights)
    if not known.any():
        return torch.ones_like(weights)
    return torch.where(known, weights, weights[known].mean())


def density_sample(buffer: ReplayBuffer, n: int, generator: torch.Generator, exclude: Tensor | None = None,
                   k: int = DENSITY_K) -> Tensor:
    """Up to n distinct slots, drawn without replacement with probability proportional to
    `replay_weights`, avoiding `exclude`; same contract as `ReplayBuffer.sample`."""
    weights = replay_weights(buffer.features, buffer.seen, k)
    if exclude is not None and exclude.numel():
        weights[exclude.detach().cpu().long()] = 0.0
    eligible = int((weights > 0).sum())
    n = min(n, eligible)
    if n <= 0:
        return torch.zeros(0, dtype=torch.long, device=buffer.device)
    slots = torch.multinomial(weights.to(generator.device), n, replacement=False, generator=generator)
    return slots.to(buffer.device)
