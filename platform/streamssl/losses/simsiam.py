"""SimSiam loss, Chen and He 2021 (MinRed's objective).

https://arxiv.org/abs/2011.10566
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamssl.losses._checks import upcast


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """-1/2 [cos(p1, sg(z2)) + cos(p2, sg(z1))], averaged over the batch.

    Args:
        p1, p2: (b, d) predictor outputs of views 1 and 2.
        z1, z2: (b, d) projector outputs of views 1 and 2 (stop-gradient applied here).

    Returns:
        scalar loss in [-1, 1].
    """
    shapes = {tuple(t.shape) for t in (p1, p2, z1, z2)}
    if len(shapes) != 1 or p1.ndim != 2:
        raise ValueError(f"simsiam_loss: p1, p2, z1, z2 must all be (b, d), got {sorted(shapes)}")
    with torch.autocast(device_type=p1.device.type, enabled=False):
        p1, p2, z1, z2 = (upcast(t) for t in (p1, p2, z1, z2))
        return -0.5 * (F.cosine_similarity(p1, z2.detach(), dim=-1).mean()
                       + F.cosine_similarity(p2, z1.detach(), dim=-1).mean())
