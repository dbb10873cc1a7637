"""Imai et al., ACCV 2024: Multi-Crop Contrastive (MCC) + total coding rate (TCR) on a diverse buffer.

"Faster convergence and Uncorrelated gradients in Self-Supervised Online Continual Learning".
Loss: lambda_mcc * MCC(z, tau) + lambda_tcr * TCR(z, eps) over N crops per image (losses/mcc.py, losses/tcr.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from streamssl import distributed
from streamssl.checks import in_range, one_of
from streamssl.losses import mcc_loss, tcr_loss
from streamssl.losses.mcc import VARIANTS
from streamssl.methods.base import StepOutput
from streamssl.methods.multicrop import MultiCropMethod, MultiCropParams

# Below this many crops MCC is out of its operating regime: a crop's
# positive, the normalized crop mean, contains the crop itself with weight 1/N, so at small N a
# crop wins its softmax against the other images' means with no agreement between crops at all.
MCC_MIN_CROPS = 8


@dataclass(frozen=True)
class ImaiParams(MultiCropParams):
    temperature: float = 0.07  # tau of MCC
    lambda_mcc: float = 50.0
    mcc_variant: str = "crop_anchor"  # crop_anchor (authors' code) | mean_anchor (paper text)

    def validate(self) -> None:
        super().validate()
        in_range("method.temperature", self.temperature, 0, low_open=True)
        in_range("method.lambda_mcc", self.lambda_mcc, 0)
        one_of("method.mcc_variant", self.mcc_variant, VARIANTS)


class Imai(MultiCropMethod):
    Params = ImaiParams
    presets = {"learner.schedule": "accv", "buffer.policy": "diverse"}
    provides_sample_loss = True

    @classmethod
    def operating_warnings(cls, params: ImaiParams) -> list[str]:
        if params.crops >= MCC_MIN_CROPS or params.lambda_mcc == 0:  # lambda_mcc 0: MCC is off
            return []
        return [f"method.crops={params.crops} < {MCC_MIN_CROPS}: MCC's positive (the crop mean) contains the "
                f"anchor crop itself, so crops can win their softmax without invariance; the paper uses N=20"]

    def step(self, images: torch.Tensor, generator: torch.Generator) -> StepOutput:
        p = self.params
        z = self.project_crops(images, generator)  # (N, B, proj_dim)
        # With W workers, negatives (and TCR's Gram matrix) span every worker's batch, so W
        # workers of batch b compute what one worker of batch W*b would; identity at W = 1.
        g = distributed.gather_crops(z)
        mcc = g.weight * mcc_loss(z, tau=p.temperature, variant=p.mcc_variant, **g.mcc_kwargs(p.mcc_variant))
        tcr = tcr_loss(g.crops, eps=p.eps)
        loss = p.lambda_mcc * mcc + p.lambda_tcr * tcr
        return StepOutput(loss, self.features_from(z), {"mcc": mcc.item(), "tcr": tcr.item()},
                          sample_loss=mcc_per_image(z, p.temperature))


@torch.no_grad()
def mcc_per_image(z: torch.Tensor, tau: float) -> torch.Tensor:
    """(b,) each image's share of MCC (crop-anchor form, this batch's means as keys): how hard the
    image's crops find their own mean; what `buffer.policy: hard` ranks. TCR has no per-image split."""
    means = F.normalize(z.mean(0), dim=-1)  # (b, d)
    log_p = (z @ means.T / tau).log_softmax(-1)  # (N, b, b): crop i of image j against every mean
    return -log_p.diagonal(dim1=1, dim2=2).mean(0)

