"""Shared shape of the two-view methods (SimCLR, BYOL, MinRed, SCALE): two crops -> backbone -> projector.

A subclass builds `projector` (or overrides `project`) and `crop_params` with 2 crops, and scores
the stacked projections in `loss`; the buffer tracks normalize(z1 + z2) of every image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamssl.augment import multicrop
from streamssl.methods.base import Method, MethodParams, StepOutput, check_crop_scale


@dataclass(frozen=True)
class TwoViewParams(MethodParams):
    crop_scale: tuple = (0.2, 1.0)  # RandomResizedCrop area range of both views

    def validate(self) -> None:
        super().validate()
        check_crop_scale(self.crop_scale)


def pair_features(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """normalize(z1 + z2), detached float32 (B, D): the per-image feature the buffer tracks."""
    return F.normalize((z1 + z2).detach().float(), dim=-1)


class TwoViewMethod(Method):
    """Two augmented views of every image; `loss` scores their projections."""

    Params = TwoViewParams
    projector: nn.Module

    def two_views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return multicrop(images, self.crop_params, generator)  # crop_params holds the 2 views

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """(B, backbone_dim) -> (B, proj_dim) float32 (losses and buffer features stay float32 under bf16)."""
        return self.projector(features).float()

    def step(self, images: torch.Tensor, generator: torch.Generator) -> StepOutput:
        views = self.two_views(images, generator)  # (2, B, 3, S, S)
        b = views.shape[1]
        x = views.flatten(0, 1)  # (2B, 3, S, S), view-major
        z = self.project(self.backbone(x))  # (2B, proj_dim)
        loss, parts = self.loss(z, x)
        return StepOutput(loss, pair_features(z[:b], z[b:]), parts)

    def loss(self, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss and its named terms from z (2B, proj_dim): rows [0, B) view 1, [B, 2B) view 2.

        `x` is the (2B, 3, S, S) batch of views z was computed from (for a target network).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement loss")
