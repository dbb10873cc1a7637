"""Backbones (by registered name) and projection heads."""

from __future__ import annotations

from torch import nn

from streamssl.errors import ConfigError
from streamssl.models import backbones
from streamssl.models.heads import EMPHead, SimSiamPredictor, SimSiamProjector, projection_mlp
from streamssl.models.spec import ModelSpec

# name -> constructor() -> (module, output width)
BACKBONES = {
    "resnet18_cifar": backbones.resnet18_cifar,
    "resnet18": backbones.resnet18,
    "resnet50": backbones.resnet50,
    "cnn4": backbones.cnn4,
    "cnn4_wide": backbones.cnn4_wide,
}


def build_backbone(name: str) -> tuple[nn.Module, int]:
    """Build a registered backbone, randomly initialized (from torch's global RNG).

    Args:
        name: a key of BACKBONES.

    Returns:
        (module mapping (B, 3, H, W) float -> (B, D) pooled features, D).

    Raises:
        ConfigError: unknown name.
    """
    if name not in BACKBONES:
        raise ConfigError(f"model.backbone: unknown backbone '{name}' (choose from {', '.join(BACKBONES)})")
    return BACKBONES[name]()


__all__ = ["BACKBONES", "build_backbone", "EMPHead", "ModelSpec", "SimSiamProjector", "SimSiamPredictor",
           "projection_mlp"]
