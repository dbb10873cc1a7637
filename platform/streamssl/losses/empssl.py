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


def empssl_loss(z: torch.Tensor, lambda_sim: float = 200.0, lambda_tcr: float = 1.0, eps: float = 0.2,
                all_crops: torch.Tensor | None = None, sim_weight: float = 1.0
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """lambda_sim * sim_weight * cosine_to_mean_loss(z) + lambda_tcr * tcr_loss(all_crops, eps).

    Args:
        z: (N, b, d) L2-normalized projections of N crops of b images.
        all_crops: the crops TCR sees: every worker's (N, sum b, d) under data parallelism
            (`distributed.gather_crops`); None: z.
        sim_weight: this worker's share of the global batch, so the summed gradients of the
            per-worker invariance terms equal the single-process one.

    Returns:
        (scalar loss, {"sim": weighted cosine term, "tcr": unweighted TCR term}, both detached).
    """
    sim = sim_weight * cosine_to_mean_loss(z)
    tcr = tcr_loss(z if all_crops is None else all_crops, eps)
    return lambda_sim * sim + lambda_tcr * tcr, {"sim": sim.detach(), "tcr": tcr.detach()}
