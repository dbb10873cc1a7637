"""BYOL's loss, Grill et al. 2020: normalized MSE between prediction and target.

https://arxiv.org/abs/2006.07733
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamssl.losses._checks import upcast


def byol_loss(p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """Symmetrized (2 - 2 cos(p1, sg t2)) + (2 - 2 cos(p2, sg t1)), averaged over the batch.

    2 - 2 cos(p, t) equals ||p/|p| - t/|t|||^2, the paper's per-view loss; the two views' terms are
    summed as in the paper, so the loss lies in [0, 8].

    Args:
        p1, p2: (b, d) online predictions of views 1 and 2.
        t1, t2: (b, d) target projections of views 1 and 2 (stop-gradient applied here).

    Returns:
        scalar loss.
    """
    shapes = {tuple(t.shape) for t in (p1, p2, t1, t2)}
    if len(shapes) != 1 or p1.ndim != 2:
        raise ValueError(f"byol_loss: p1, p2, t1, t2 must all be (b, d), got {sorted(shapes)}")
    with torch.autocast(device_type=p1.device.type, enabled=False):
        p1, p2, t1, t2 = (upcast(t) for t in (p1, p2, t1, t2))
        cos = F.cosine_similarity(p1, t2.detach(), dim=-1) + F.cosine_similarity(p2, t1.detach(), dim=-1)
        return (4 - 2 * cos).mean()
