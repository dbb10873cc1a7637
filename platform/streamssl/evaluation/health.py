"""Representation health: crop invariance and collapse, measured at every evaluation point.

* ``crop_cosine``: the mean cosine between the projections of two different training crops of the
  same image. It falls when a method stops being invariant between crops (an MCC positive that
  contains the anchor crop itself lets each crop win its softmax alone, docs/method-spec.md §8).
* ``effective_rank``: exp of the entropy of the normalized singular values p_i = s_i / sum(s) of a
  feature matrix (Roy & Vetterli 2007; RankMe, Garrido et al. 2023, without centring). D for
  features spread evenly over D directions, 1 for a rank-1 (collapsed) matrix.

The crops are the method's own training augmentation (`Method.two_views`: two crops of its recipe,
BYOL's two asymmetric views), drawn from a private generator that evaluation re-seeds every time,
so the crops are the same at every point and the training generators are never touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from streamssl.methods import Method

HEALTH_SEED_OFFSET = 2_654_435_761  # keeps the crop generator's stream apart from the training ones


def effective_rank(features: torch.Tensor) -> float:
    """exp(-sum p_i log p_i), p_i = s_i / sum(s), over the singular values s of features [n, d].

    Zero singular values contribute nothing (0 log 0 = 0); NaN for an all-zero or empty matrix.
    """
    s = torch.linalg.svdvals(features.detach().double().cpu())
    total = s.sum()
    if not len(s) or total <= 0:
        return float("nan")
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def crop_cosine(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """Mean over rows of cos(z1_i, z2_i): [n, d] x [n, d] -> float (NaN for n = 0)."""
    if not len(z1):
        return float("nan")
    return float(F.cosine_similarity(z1.double(), z2.double(), dim=1).mean())


def health_generator(seed: int) -> torch.Generator:
    """The private CPU generator of the health crops (draws are moved to the images' device)."""
    return torch.Generator().manual_seed(seed * 7 + HEALTH_SEED_OFFSET)


def two_views(method: Method, images_u8: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Two training crops of every image, as the method makes them: [2, b, 3, S, S] normalized."""
    return method.two_views(images_u8, generator)


def projection(method: Method, x: torch.Tensor) -> torch.Tensor:
    """The method's projection head output for normalized crops x [n, 3, S, S]."""
    return method.project(method.backbone(x))


@torch.no_grad()
def crop_projections(method: torch.nn.Module, images_u8: torch.Tensor, generator: torch.Generator,
                     batch_size: int = 512, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Projections (z1, z2), each [n, d] float32 on the CPU, of two training crops of every image
    (uint8 [n, 3, S, S], moved to `device` a batch at a time)."""
    first, second = [], []
    for start in range(0, len(images_u8), batch_size):
        views = two_views(method, images_u8[start:start + batch_size].to(device), generator)
        b = views.shape[1]
        z = projection(method, views.flatten(0, 1)).float().cpu()
        first.append(z[:b])
        second.append(z[b:])
    if not first:
        return torch.zeros(0, 1), torch.zeros(0, 1)
    return torch.cat(first), torch.cat(second)
