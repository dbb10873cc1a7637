"""Multi-Crop Contrastive (MCC) loss of Imai et al., ACCV 2024.

https://openaccess.thecvf.com/content/ACCV2024/html/Imai_Faster_convergence_and_Uncorrelated_gradients_in_Self-Supervised_Online_Continual_Learning_ACCV_2024_paper.html
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamssl.errors import ConfigError
from streamssl.losses._checks import check_crops, upcast

VARIANTS = ("crop_anchor", "mean_anchor")


def mcc_loss(z: torch.Tensor, tau: float = 0.07, variant: str = "crop_anchor", *,
             means_all: torch.Tensor | None = None, crops_all: torch.Tensor | None = None,
             offset: int = 0) -> torch.Tensor:
    """MCC loss over the normalized mean features zbar_j = normalize(mean_i z[i, j]) (gradient flows).

    `crop_anchor` (the authors' code): each crop z[i, j] is an anchor; its logits are its cosine to
    all b means over tau, cross-entropy to its own image j, averaged over N*b. Crops of one image
    are never contrasted with each other.
    `mean_anchor` (the paper's text): for each image j and crop i,
    -log(exp(zbar_j . z[i, j] / tau) / sum_{l, k} exp(zbar_j . z[l, k] / tau)), averaged over N*b.

    For data parallelism the negatives may be gathered across workers: `means_all` (crop_anchor)
    or `crops_all` (mean_anchor) replace the local means or crops, and image j's positive is
    column/image `offset + j` there. The defaults give the single-process loss.

    Computed in float32 even under autocast (bf16 logits over tau=0.07 lose too much).

    Args:
        z: (N, b, d) L2-normalized projections of N crops of b images.
        tau: temperature > 0.
        variant: "crop_anchor" or "mean_anchor".
        means_all: (B_all, d) normalized means of all workers' images, for crop_anchor.
        crops_all: (N, B_all, d) all workers' crops, for mean_anchor.
        offset: index of this worker's first image in the gathered tensors.

    Returns:
        scalar loss.

    Raises:
        ConfigError: tau <= 0 or an unknown variant. ValueError: z not (N >= 2, b, d).
    """
    if tau <= 0:
        raise ConfigError(f"mcc_loss: tau must be > 0, got {tau}")
    if variant not in VARIANTS:
        raise ConfigError(f"mcc_loss: unknown variant '{variant}' (choose from {', '.join(VARIANTS)})")
    check_crops(z, "mcc_loss", min_crops=2)
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = upcast(z)
        n_crops, b, d = z.shape
        means = F.normalize(z.mean(dim=0), dim=-1)  # (b, d)
        target = torch.arange(offset, offset + b, device=z.device)
        if variant == "crop_anchor":
            keys = means if means_all is None else upcast(means_all)
            logits = z.reshape(n_crops * b, d) @ keys.T / tau  # (N*b, B_all)
            return F.cross_entropy(logits, target.repeat(n_crops))
        crops = z if crops_all is None else upcast(crops_all)
        logits = means @ crops.reshape(-1, d).T / tau  # (b, N*B_all), column l*B_all + k
        log_p = logits.log_softmax(dim=1).view(b, n_crops, -1)  # (b, N, B_all)
        return -log_p.gather(2, target.view(b, 1, 1).expand(b, n_crops, 1)).mean()
