"""Shared machinery of the multi-crop methods (imai, empssl): N crops -> backbone -> EMP head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from streamssl.augment import CropParams, multicrop
from streamssl.config import ModelConfig
from streamssl.methods.base import Method, MethodParams
from streamssl.models.heads import EMPHead


@dataclass(frozen=True)
class MultiCropParams(MethodParams):
    crops: int = 20  # N
    eps: float = 0.2  # TCR epsilon
    lambda_tcr: float = 1.0
    crop_scale: tuple = (0.25, 0.25)  # area fraction of each crop (EMP-SSL: fixed 25%)
    jitter_strength: float = 1.0  # scales ColorJitter(0.4, 0.4, 0.4, 0.2)


class MultiCropMethod(Method):
    """Projects N crops of each image; subclasses score z [N, b, d]."""

    def __init__(self, params: MultiCropParams, model: ModelConfig) -> None:
        super().__init__(params, model)
        self.feature_dim = model.proj_dim or 1024
        self.head = EMPHead(self.feat_dim, model.proj_hidden_dim or 4096, self.feature_dim)
        s = params.jitter_strength
        self.crop_params = CropParams(
            crops=params.crops, size=model.image_size, scale=tuple(params.crop_scale),
            jitter=(0.4 * s, 0.4 * s, 0.4 * s, min(0.2 * s, 0.5)))

    def project(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        crops = multicrop(images, self.crop_params, generator)  # [N, b, 3, S, S]
        n, b = crops.shape[:2]
        x = crops.flatten(0, 1)
        if images.device.type != "cpu" or x.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        z = self.head(self.backbone(x))  # [N*b, d], crop-major
        return z.float().view(n, b, -1)

    def features_from(self, z: torch.Tensor) -> torch.Tensor:
        """normalize(mean over crops): the per-image feature the diversity buffer tracks."""
        return F.normalize(z.detach().mean(0), dim=-1)
