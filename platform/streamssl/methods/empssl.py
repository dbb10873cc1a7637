"""EMP-SSL (Tong et al., 2023, arXiv 2304.03977) as an online baseline: same loop, its own loss.

Loss: lambda_sim * (-mean cosine of each crop to its image's mean) + lambda_tcr * TCR.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streamssl import distributed
from streamssl.checks import in_range
from streamssl.losses import empssl_loss
from streamssl.methods.base import StepOutput
from streamssl.methods.multicrop import MultiCropMethod, MultiCropParams


@dataclass(frozen=True)
class EMPSSLParams(MultiCropParams):
    lambda_sim: float = 200.0

    def validate(self) -> None:
        super().validate()
        in_range("method.lambda_sim", self.lambda_sim, 0)


class EMPSSL(MultiCropMethod):
    Params = EMPSSLParams
    presets = {"learner.schedule": "accv", "buffer.policy": "diverse"}

    def step(self, images: torch.Tensor, generator: torch.Generator) -> StepOutput:
        p = self.params
        z = self.project_crops(images, generator)  # (N, B, proj_dim)
        g = distributed.gather_crops(z)  # TCR over every worker's batch; identity at W = 1
        loss, parts = empssl_loss(z, p.lambda_sim, p.lambda_tcr, p.eps, all_crops=g.crops, sim_weight=g.weight)
        return StepOutput(loss, self.features_from(z), {name: v.item() for name, v in parts.items()})
