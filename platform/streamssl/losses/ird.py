"""Instance-wise relation distillation (IRD) from Co2L (Cha et al., ICCV 2021), as used by SCALE.

Each sample's similarity distribution over the other samples of the batch, under the current
model, is pulled towards the same distribution under a frozen past model.
https://arxiv.org/abs/2106.14413
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamssl.losses._checks import upcast


def ird_loss(z: torch.Tensor, z_past: torch.Tensor, current_temperature: float = 0.1,
             past_temperature: float = 0.01) -> torch.Tensor:
    """Cross-entropy between past and current off-diagonal similarity softmaxes.

    With p_i = softmax_{j != i}(z_past_i . z_past_j / past_temperature) and
    q_i = softmax_{j != i}(z_i . z_j / current_temperature), the loss is
    mean_i sum_{j != i} -p_ij log q_ij. The past side is a fixed target (no gradient).

    Args:
        z: (b, d) current projections (L2-normalized here).
        z_past: (b, d) the past model's projections of the same inputs (L2-normalized here).
        current_temperature: temperature of q (SCALE: 0.1).
        past_temperature: temperature of p (SCALE: 0.01).

    Returns:
        scalar loss; 0 when b < 2 (no other sample to relate to).
    """
    _check(z, z_past, current_temperature, past_temperature)
    b = z.shape[0]
    if b < 2:
        return z.sum() * 0.0  # keeps the graph (and dtype) of a real loss
    with torch.autocast(device_type=z.device.type, enabled=False):
        cur = F.normalize(upcast(z), dim=-1)
        past = F.normalize(upcast(z_past.detach()), dim=-1)
        log_q = torch.log_softmax(_off_diagonal(cur @ cur.T) / current_temperature, dim=1)
        p = torch.softmax(_off_diagonal(past @ past.T) / past_temperature, dim=1)
        return -(p * log_q).sum(1).mean()


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """(b, b) -> (b, b - 1): each row without its diagonal entry, other entries in order."""
    b = m.shape[0]
    # dropping the first element makes every diagonal entry the last of a (b + 1)-long row
    return m.flatten()[1:].view(b - 1, b + 1)[:, :-1].reshape(b, b - 1)


def _check(z: torch.Tensor, z_past: torch.Tensor, current_temperature: float, past_temperature: float) -> None:
    if z.ndim != 2 or z.shape != z_past.shape or z.shape[0] < 1:
        raise ValueError(f"ird_loss: z and z_past must both be (b, d), got {tuple(z.shape)}, {tuple(z_past.shape)}")
    if current_temperature <= 0 or past_temperature <= 0:
        raise ValueError(f"ird_loss: temperatures must be > 0, got {current_temperature} and {past_temperature}")
