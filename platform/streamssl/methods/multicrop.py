"""Shared machinery of the multi-crop methods (imai, empssl): N crops -> backbone -> EMP head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from streamssl.augment import CropParams, multicrop
from streamssl.checks import in_range, require
from streamssl.methods.base import Method, MethodParams, check_crop_scale
from streamssl.models import EMPHead, ModelSpec


@dataclass(frozen=True)
class MultiCropParams(MethodParams):
    crops: int = 20  # N
    eps: float = 0.2  # TCR epsilon
    lambda_tcr: float = 1.0
    crop_scale: tuple = (0.25, 0.25)  # area fraction of each crop (EMP-SSL: fixed 25%)
    jitter_strength: float = 1.0  # scales ColorJitter(0.4, 0.4, 0.4, 0.2)

    def validate(self) -> None:
        super().validate()
        require(self.crops >= 2, f"method.crops: needs at least 2 crops, got {self.crops}")
        in_range("method.eps", self.eps, 0, low_open=True)
        in_range("method.lambda_tcr", self.lambda_tcr, 0)
        check_crop_scale(self.crop_scale)
        in_range("method.jitter_strength", self.jitter_strength, 0)


class MultiCropMethod(Method):
    """Projects N crops of each image; subclasses score z (N, B, proj_dim)."""

    def __init__(self, params: MultiCropParams, model: ModelSpec) -> None:
        super().__init__(params, model)
        self.proj_dim = model.proj_dim or 1024
        self.head = EMPHead(self.backbone_dim, model.proj_hidden_dim or 4096, self.proj_dim)
        s = params.jitter_strength
        self.crop_params = CropParams(
            crops=params.crops, size=model.image_size, scale=tuple(params.crop_scale),
            jitter=(0.4 * s, 0.4 * s, 0.4 * s, min(0.2 * s, 0.5)))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """EMP head: (B, backbone_dim) -> (B, proj_dim), L2-normalized."""
        return self.head(features)

    def project_crops(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """z (N, B, proj_dim) float32 of N fresh crops of every uint8 image (B, 3, S, S)."""
        crops = multicrop(images, self.crop_params, generator)  # (N, B, 3, S, S)
        n, b = crops.shape[:2]
        x = crops.flatten(0, 1)
        if images.device.type != "cpu" or x.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        z = self.project(self.backbone(x))  # (N*B, proj_dim), crop-major
        return z.float().view(n, b, -1)

    def features_from(self, z: torch.Tensor) -> torch.Tensor:
        """normalize(mean over crops): the per-image feature the diversity buffer tracks."""
        return F.normalize(z.detach().mean(0), dim=-1)
