"""MinRed (Purushwalkam et al., ECCV 2022): SimSiam on a minimum-redundancy buffer.

Two views, SimSiam projector + predictor, loss -1/2[cos(p1, sg z2) + cos(p2, sg z1)]; the buffer
ranks samples by normalize(z1 + z2) and training starts once it is full (the `minred` replay
schedule, streamssl.train.replay). https://arxiv.org/abs/2203.12710
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streamssl.augment import CropParams
from streamssl.checks import in_range
from streamssl.losses import simsiam_loss
from streamssl.methods.twoview import TwoViewMethod, TwoViewParams
from streamssl.models import ModelSpec, SimSiamPredictor, SimSiamProjector


@dataclass(frozen=True)
class MinRedParams(TwoViewParams):
    pred_dim: int = 128  # predictor bottleneck (official ResNet-18 config)

    def validate(self) -> None:
        super().validate()
        in_range("method.pred_dim", self.pred_dim, 1)


class MinRed(TwoViewMethod):
    Params = MinRedParams
    presets = {"learner.schedule": "minred", "buffer.policy": "diverse"}

    def __init__(self, params: MinRedParams, model: ModelSpec) -> None:
        super().__init__(params, model)
        self.proj_dim = model.proj_dim or 512  # official ResNet-18 config: 512
        hidden = model.proj_hidden_dim or self.backbone_dim
        self.projector = SimSiamProjector(self.backbone_dim, self.proj_dim, hidden)
        self.predictor = SimSiamPredictor(self.proj_dim, params.pred_dim)
        self.crop_params = CropParams(
            crops=2, size=model.image_size, scale=tuple(params.crop_scale), ratio=(3 / 4, 4 / 3),
            jitter=(0.4, 0.4, 0.4, 0.1), p_blur=0.5, p_solarize=0.0)

    def loss(self, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        p = self.predictor(z)  # both views in one batch: one set of BatchNorm statistics
        z1, z2 = z.chunk(2)
        p1, p2 = p.chunk(2)
        loss = simsiam_loss(p1, p2, z1, z2)
        return loss, {"simsiam": loss.item()}
