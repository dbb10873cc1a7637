"""Backbones (by registered name) and projection heads."""

from __future__ import annotations

from torch import nn

from streamssl.errors import ConfigError
from streamssl.models import backbones
from streamssl.models.heads import EMPHead, SimSiamPredictor, SimSiamProjector

# name -> constructor(pretrained: bool) -> (module, feature dim)
BACKBONES = {
    "resnet18_cifar": backbones.resnet18_cifar,
    "resnet18": backbones.resnet18,
    "resnet50": backbones.resnet50,
    "cnn4": backbones.cnn4,
    "cnn4_wide": backbones.cnn4_wide,
}


def build_backbone(name: str, *, pretrained: bool = False) -> tuple[nn.Module, int]:
    """Build a registered backbone.

    Args:
        name: a key of BACKBONES.
        pretrained: load ImageNet weights (torchvision ResNets with their original stem only).

    Returns:
        (module mapping (B, 3, H, W) float -> (B, D) pooled features, D).

    Raises:
        ConfigError: unknown name, or pretrained weights asked of a custom backbone.
    """
    if name not in BACKBONES:
        raise ConfigError(f"model.backbone: unknown backbone '{name}' (choose from {', '.join(BACKBONES)})")
    return BACKBONES[name](pretrained=pretrained)


__all__ = ["BACKBONES", "build_backbone", "EMPHead", "SimSiamProjector", "SimSiamPredictor"]
