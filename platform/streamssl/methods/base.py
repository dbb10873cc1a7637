"""The method contract: an SSL objective that turns a batch of uint8 images into a loss.

The learner loop (streamssl.train.learner) owns the buffer, the optimizer and the schedule; a
method only augments, forwards and scores, and hands back the per-sample features the diversity
buffer ranks by.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import nn

from streamssl.config import ModelConfig
from streamssl.errors import ConfigError
from streamssl.models import build_backbone


@dataclass(frozen=True)
class MethodParams:
    """Base of every method's parameter dataclass."""

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("crops",) and value < 2:
                raise ConfigError(f"method.{f.name}: needs at least 2 crops, got {value}")
            if f.name in ("temperature", "eps") and value <= 0:
                raise ConfigError(f"method.{f.name}: must be > 0, got {value}")
            if f.name == "crop_scale" and not (len(value) == 2 and 0 < value[0] <= value[1] <= 1):
                raise ConfigError(f"method.crop_scale: [lo, hi] with 0 < lo <= hi <= 1, got {value}")


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar, with grad
    features: torch.Tensor  # [b, D] detached, L2-normalized: what the buffer's EMA tracks
    parts: dict[str, float]  # named loss terms for logging


class Method(nn.Module):
    """Backbone + method-specific heads; subclasses implement `step`."""

    Params: ClassVar[type[MethodParams]] = MethodParams
    # learner/buffer keys this method sets unless the user sets them explicitly
    presets: ClassVar[dict] = {}

    def __init__(self, params: MethodParams, model: ModelConfig) -> None:
        super().__init__()
        self.params = params
        self.image_size = model.image_size
        self.backbone, self.feat_dim = build_backbone(model.backbone)

    @classmethod
    def operating_warnings(cls, params: MethodParams) -> list[str]:
        """Settings outside the method's operating regime, one message per problem, naming the key.

        A pure function of the params: the runner logs these at run start and records them in
        run.json (`warnings`), and the report lists them. The run is not refused.
        """
        del params
        return []

    def step(self, images: torch.Tensor, generator: torch.Generator) -> StepOutput:
        """Loss for uint8 images [b, 3, S, S] on the training device."""
        raise NotImplementedError

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features [b, feat_dim] of normalized float images, for kNN and probes."""
        return self.backbone(x)

    def after_step(self, update: int, total_updates: int) -> None:
        """Hook after each optimizer step (EMA targets and the like)."""
        return None
