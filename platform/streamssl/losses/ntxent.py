"""SimCLR's NT-Xent loss, Chen et al. 2020 (Sec. 2.1, Eq. 1), with optional cross-worker negatives.

https://arxiv.org/abs/2002.05709
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamssl.losses._checks import upcast


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, *,
                 z1_all: torch.Tensor | None = None, z2_all: torch.Tensor | None = None,
                 offset: int = 0) -> torch.Tensor:
    """Normalized temperature-scaled cross entropy over two views.

    Each of the 2b local projections is an anchor; its positive is the other view of the same image
    and its negatives are every other projection of both views (2n - 2 of them, n = b on one
    worker). With several workers, pass the all-gathered projections; their local rows (offset ..
    offset + b) are replaced by z1 / z2, so the local samples get gradients as anchors and as keys
    even from a plain (detached) all_gather. With a differentiable gather
    (torch.distributed.nn.functional.all_gather) the other rows carry gradients back to their
    ranks too, and DDP's gradient average then equals the gradient of the global-batch loss.

    Args:
        z1, z2: (b, d) projections of views 1 and 2 (L2-normalized here).
        temperature: softmax temperature tau > 0.
        z1_all, z2_all: (n, d) projections of views 1 and 2 from every worker, or None (n = b).
        offset: index of this worker's first sample in z1_all / z2_all (rank * b).

    Returns:
        scalar loss, the mean over the 2b local anchors.
    """
    z1_all, z2_all = _check(z1, z2, temperature, z1_all, z2_all, offset)
    b, n = z1.shape[0], z1_all.shape[0]
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z1, z2, z1_all, z2_all = (upcast(t) for t in (z1, z2, z1_all, z2_all))
        q = F.normalize(torch.cat([z1, z2]), dim=-1)  # (2b, d) anchors
        keys = F.normalize(torch.cat([_splice(z1_all, z1, offset), _splice(z2_all, z2, offset)]), dim=-1)
        logits = q @ keys.T / temperature  # (2b, 2n)
        local = torch.arange(b, device=z1.device) + offset
        own = torch.cat([local, local + n])  # column of each anchor itself
        positive = torch.cat([local + n, local])  # column of its other view
        anchors = torch.arange(2 * b, device=z1.device)
        logits = logits.index_put((anchors, own), logits.new_tensor(float("-inf")))
        return F.cross_entropy(logits, positive)


def _splice(all_rows: torch.Tensor, local: torch.Tensor, offset: int) -> torch.Tensor:
    if all_rows is local:
        return local
    return torch.cat([all_rows[:offset], local, all_rows[offset + local.shape[0]:]])


def _check(z1, z2, temperature, z1_all, z2_all, offset):
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 1:
        raise ValueError(f"nt_xent_loss: z1 and z2 must both be (b, d), got {tuple(z1.shape)}, {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"nt_xent_loss: temperature must be > 0, got {temperature}")
    if (z1_all is None) != (z2_all is None):
        raise ValueError("nt_xent_loss: pass both z1_all and z2_all, or neither")
    if z1_all is None:
        if offset != 0:
            raise ValueError(f"nt_xent_loss: offset {offset} needs gathered z1_all / z2_all")
        return z1, z2
    n = z1_all.shape[0]
    if z1_all.shape != z2_all.shape or z1_all.ndim != 2 or z1_all.shape[1] != z1.shape[1]:
        raise ValueError(f"nt_xent_loss: z1_all and z2_all must both be (n, {z1.shape[1]}), "
                         f"got {tuple(z1_all.shape)}, {tuple(z2_all.shape)}")
    if not 0 <= offset <= n - z1.shape[0]:
        raise ValueError(f"nt_xent_loss: offset {offset} + b {z1.shape[0]} does not fit in n = {n} gathered rows")
    return z1_all, z2_all
