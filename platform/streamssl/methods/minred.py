"""MinRed (Purushwalkam et al., ECCV 2022): SimSiam on a minimum-redundancy buffer.

Two views, SimSiam projector + predictor, loss -1/2[cos(p1, sg z2) + cos(p2, sg z1)]; the buffer
ranks samples by normalize(z1 + z2) and trains only once it is full (method-spec 5.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from streamssl.augment import CropParams, multicrop
from streamssl.config import ModelConfig
from streamssl.losses import simsiam_loss
from streamssl.methods.base import Method, MethodParams, StepOutput
from streamssl.models.heads import SimSiamPredictor, SimSiamProjector


@dataclass(frozen=True)
class MinRedParams(MethodParams):
    pred_dim: int = 128  # predictor bottleneck (official ResNet-18 config)
    crop_scale: tuple = (0.2, 1.0)


class MinRed(Method):
    Params = MinRedParams
    presets = {"learner.schedule": "minred", "buffer.policy": "diverse"}

    def __init__(self, params: MinRedParams, model: ModelConfig) -> None:
        super().__init__(params, model)
        self.feature_dim = model.proj_dim or 512  # official ResNet-18 config: 512
        hidden = model.proj_hidden_dim or self.feat_dim
        self.projector = SimSiamProjector(self.feat_dim, self.feature_dim, hidden)
        self.predictor = SimSiamPredictor(self.feature_dim, params.pred_dim)
        self.crop_params = CropParams(
            crops=2, size=model.image_size, scale=tuple(params.crop_scale), ratio=(3 / 4, 4 / 3),
            jitter=(0.4, 0.4, 0.4, 0.1), p_blur=0.5, p_solarize=0.0)

    def step(self, images: torch.Tensor, generator: torch.Generator) -> StepOutput:
        views = multicrop(images, self.crop_params, generator)  # [2, b, 3, S, S]
        b = views.shape[1]
        z = self.projector(self.backbone(views.flatten(0, 1))).float()  # [2b, dim]
        p = self.predictor(z)
        z1, z2, p1, p2 = z[:b], z[b:], p[:b], p[b:]
        loss = simsiam_loss(p1, p2, z1, z2)
        feats = F.normalize((z1 + z2).detach(), dim=-1)
        return StepOutput(loss, feats, {"simsiam": loss.item()})
