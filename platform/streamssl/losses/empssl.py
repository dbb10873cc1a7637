"""EMP-SSL objective, Tong et al. 2023: cosine of each crop to its image mean + TCR.

https://arxiv.org/abs/2304.03977
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamssl.losses._checks import check_crops, upcast
from streamssl.losses.tcr import tcr_loss


def cosine_to_mean_loss(z: torch.Tensor) -> torch.Tensor:
    """-(1/N) sum_i mean_j cos(z[i, j], zbar_j), zbar_j = mean_i z[i, j] (not detached).

    Args:
        z: (N, b, d) projections of N crops of b images.

    Returns:
        scalar loss in [-1, 1].
    """
    check_crops(z, "cosine_to_mean_loss")
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = upcast(z)
        return -F.cosine_similarity(z, z.mean(dim=0, keepdim=True), dim=-1).mean()


def empssl_loss(z: torch.Tensor, lambda_sim: float = 200.0, lambda_tcr: float = 1.0,
                eps: float = 0.2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """lambda_sim * cosine_to_mean_loss(z) + lambda_tcr * tcr_loss(z, eps).

    Args:
        z: (N, b, d) L2-normalized projections of N crops of b images.

    Returns:
        (scalar loss, {"sim": unweighted cosine term, "tcr": unweighted TCR term}, both detached).
    """
    sim = cosine_to_mean_loss(z)
    tcr = tcr_loss(z, eps)
    return lambda_sim * sim + lambda_tcr * tcr, {"sim": sim.detach(), "tcr": tcr.detach()}
