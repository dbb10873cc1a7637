"""SCALE's pseudo-supervised contrastive (PSC) loss (Yu et al., CVPRW 2023).

SupCon (Khosla et al. 2020) whose positives come from a tSNE-style similarity mask of backbone
features instead of labels. Only stream samples have positives and only stream anchors are
scored; replayed memory samples act as negatives. https://arxiv.org/abs/2208.11266

Mask features: the spec's inputs are the unnormalized 512-d backbone features, while its distance
D = 2 - 2 Fi Fj^T is the squared Euclidean distance only for unit vectors (the SCALE code's own
comment says "all features are normalized", but its backbone does not normalize). We L2-normalize
by default (`normalize=True`), so D really is the squared distance and the tSNE temperature acts on
a bounded range; `normalize=False` reproduces the code exactly (raw dot products, for which a
row softmax of -D / tau equals a softmax of 2 Fi Fj^T / tau: the constant 2 cancels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamssl.losses._checks import upcast

_SELF = 1000.0  # SCALE's penalty on a sample's similarity to itself (any view pair)


def similarity_mask(h: torch.Tensor, n_stream: int, tsne_temperature: float = 0.1, thres_ratio: float = 0.1,
                    normalize: bool = True) -> torch.Tensor:
    """PSC's positive mask from the backbone features of both views (no gradient).

    For each of the V*V view pairs (i, j): D = 2 - 2 Fi Fj^T, T = -D / tau - 1000 I and
    P = 1/2 softmax_row(T) + 1/2 softmax_col(T); the V*V matrices P are averaged. The threshold is
    mean + thres_ratio * (max - mean) over the off-diagonal entries of the average; the diagonal is
    set to 1 and everything outside the stream x stream block to 0 before thresholding.

    Args:
        h: (V, b, D) backbone features of V views of b images; rows [0, n_stream) are stream samples.
        n_stream: number of stream samples (the rest are memory samples).
        tsne_temperature: tau of the tSNE similarity (SCALE: 0.1).
        thres_ratio: position of the threshold between the mean and the max (SCALE: 0.1 non-iid, 0.3 iid).
        normalize: L2-normalize the features first (see the module docstring).

    Returns:
        (b, b) bool mask; True at (i, j) when j is a positive of anchor i (diagonal True for stream rows).
    """
    _check_mask_args(h, n_stream, tsne_temperature)
    v, b, _ = h.shape
    with torch.no_grad(), torch.autocast(device_type=h.device.type, enabled=False):
        f = upcast(h.detach())
        f = F.normalize(f, dim=-1) if normalize else f
        flat = f.reshape(v * b, -1)
        t = -(2 - 2 * flat @ flat.T) / tsne_temperature  # (V*b, V*b): every view pair at once
        t = t.view(v, b, v, b) - _SELF * torch.eye(b, device=h.device, dtype=t.dtype).view(1, b, 1, b)
        p = 0.5 * torch.softmax(t, dim=3) + 0.5 * torch.softmax(t, dim=1)  # row / column softmax per block
        p = p.mean(dim=(0, 2))  # (b, b)
        off = ~torch.eye(b, dtype=torch.bool, device=h.device)
        mean, top = p[off].mean(), p[off].max()
        threshold = mean + thres_ratio * (top - mean)
        p = p.masked_fill(~off, 1.0)
        stream = torch.zeros(b, b, dtype=torch.bool, device=h.device)
        stream[:n_stream, :n_stream] = True
        return stream & (p > threshold)


def psc_loss(z: torch.Tensor, mask: torch.Tensor, n_stream: int, temperature: float = 0.1,
             base_temperature: float = 0.07) -> torch.Tensor:
    """SupCon over two views with a given positive mask, averaged over the stream anchors.

    Anchor a (a view of sample i) is contrasted with the other 2b - 1 projections; its positives
    are both views of every j with mask[i, j], itself excluded. Its loss is
    -(temperature / base_temperature) * mean over positives p of log softmax(a . k / temperature)[p].

    Args:
        z: (2, b, d) projections of the two views (L2-normalized here).
        mask: (b, b) bool positives, e.g. `similarity_mask`; rows [0, n_stream) are the stream anchors.
        n_stream: number of stream samples; only their 2 * n_stream anchors are scored.
        temperature: softmax temperature (SCALE: 0.1).
        base_temperature: SupCon's loss scale reference (0.07).

    Returns:
        scalar loss.
    """
    _check_loss_args(z, mask, n_stream, temperature, base_temperature)
    _, b, _ = z.shape
    with torch.autocast(device_type=z.device.type, enabled=False):
        keys = F.normalize(upcast(z), dim=-1).reshape(2 * b, -1)  # (2b, d)
        rows = torch.cat([torch.arange(n_stream), torch.arange(n_stream) + b]).to(z.device)  # stream anchors
        logits = keys[rows] @ keys.T / temperature  # (2n, 2b)
        logits = logits.index_put((torch.arange(rows.numel(), device=z.device), rows),
                                  logits.new_tensor(float("-inf")))
        log_prob = torch.log_softmax(logits, dim=1)
        positives = mask[:n_stream].repeat(2, 2).to(z.device)  # (2n, 2b): both views of each positive
        positives[torch.arange(rows.numel(), device=z.device), rows] = False
        mean_pos = log_prob.masked_fill(~positives, 0.0).sum(1) / positives.sum(1).clamp_min(1)
        return -(temperature / base_temperature) * mean_pos.mean()


def _check_mask_args(h: torch.Tensor, n_stream: int, tsne_temperature: float) -> None:
    if h.ndim != 3 or h.shape[1] < 2:
        raise ValueError(f"similarity_mask: h must be (V views, b >= 2 images, D), got {tuple(h.shape)}")
    if not 0 <= n_stream <= h.shape[1]:
        raise ValueError(f"similarity_mask: n_stream must be in [0, {h.shape[1]}], got {n_stream}")
    if tsne_temperature <= 0:
        raise ValueError(f"similarity_mask: tsne_temperature must be > 0, got {tsne_temperature}")


def _check_loss_args(z: torch.Tensor, mask: torch.Tensor, n_stream: int, temperature: float,
                     base_temperature: float) -> None:
    if z.ndim != 3 or z.shape[0] != 2:
        raise ValueError(f"psc_loss: z must be (2 views, b, d), got {tuple(z.shape)}")
    b = z.shape[1]
    if mask.shape != (b, b) or mask.dtype != torch.bool:
        raise ValueError(f"psc_loss: mask must be a ({b}, {b}) bool tensor, got {mask.dtype} {tuple(mask.shape)}")
    if not 1 <= n_stream <= b:
        raise ValueError(f"psc_loss: n_stream must be in [1, {b}], got {n_stream}")
    if temperature <= 0 or base_temperature <= 0:
        raise ValueError(f"psc_loss: temperatures must be > 0, got {temperature} and {base_temperature}")
