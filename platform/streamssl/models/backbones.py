"""Backbone constructors: each returns (module mapping (B, 3, H, W) float -> (B, D), D).

The ResNets are torchvision's with `fc` replaced by Identity, so the output is the globally pooled
feature that kNN evaluation reads (EMP-SSL and Imai et al. evaluate on it, not on the projection).
`cnn4` is a small network for CPU presets. Every backbone starts from random weights.
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def _tvm():
    # importing torchvision loads torch._dynamo (seconds per process): only ResNet runs pay for it
    from torchvision import models

    return models


def resnet18_cifar() -> tuple[nn.Module, int]:
    """ResNet-18 with the CIFAR stem: conv1 3x3 stride 1 pad 1, no max-pool (EMP-SSL's resnet18-cifar)."""
    net = _tvm().resnet18(weights=None)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net, 512


def resnet18() -> tuple[nn.Module, int]:
    """torchvision ResNet-18 with the ImageNet stem."""
    net = _tvm().resnet18(weights=None)
    net.fc = nn.Identity()
    return net, 512


def resnet50() -> tuple[nn.Module, int]:
    """torchvision ResNet-50."""
    net = _tvm().resnet50(weights=None)
    net.fc = nn.Identity()
    return net, 2048


class CNN4(nn.Module):
    """Four conv-BN-ReLU blocks, the first three followed by 2x2 max-pool, then global average pool.

    Sized for CPU presets at 32x32: the channels are width, 2*width, 4*width, 8*width and the
    output dimension is 8*width.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                       nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True)]
            if i < 3:  # the last block keeps its 4x4 map for the global pool
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.out_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 8*width)."""
        return self.features(x).mean(dim=(2, 3))


def cnn4() -> tuple[nn.Module, int]:
    """The small CPU CNN, width 32 (256-d output)."""
    net = CNN4(32)
    return net, net.out_dim


def cnn4_wide() -> tuple[nn.Module, int]:
    """The small CPU CNN at width 64 (512-d output)."""
    net = CNN4(64)
    return net, net.out_dim


class _CheckpointedStage(nn.Sequential):
    """A ResNet stage whose activations are recomputed in the backward pass instead of kept.

    Swapped in as the stage's class, so parameter names (and exported backbone files) stay the
    same. The recomputation runs the stage's BatchNorms a second time in train mode, which
    updates their running statistics twice per update (torch.utils.checkpoint's known cost).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            return checkpoint(super().forward, x, use_reentrant=False)
        return super().forward(x)


class _CheckpointedBlocks(nn.Sequential):
    """cnn4's layer list, each conv block (conv, BN, ReLU, pool) checkpointed as one segment: cut
    anywhere else, the in-place ReLU would overwrite a segment's saved input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x)
        block: list[nn.Module] = []
        for layer in self:
            block.append(layer)
            if isinstance(layer, nn.MaxPool2d) or layer is self[-1]:
                x = checkpoint(_run_layers, block, x, use_reentrant=False)
                block = []
        return x


def _run_layers(layers: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


def enable_grad_checkpointing(net: nn.Module) -> nn.Module:
    """Activation checkpointing of a backbone's stages (`model.grad_checkpointing`), in place:
    torchvision ResNets' layer1-layer4, cnn4's conv blocks. Memory saved and time cost at N = 20,
    ResNet-18: `streamssl bench step --checkpointing`.

    Raises:
        ValueError: a backbone with no stages known here.
    """
    if "torchvision" in sys.modules and isinstance(net, _tvm().ResNet):
        for name in ("layer1", "layer2", "layer3", "layer4"):
            getattr(net, name).__class__ = _CheckpointedStage
    elif isinstance(net, CNN4):
        net.features.__class__ = _CheckpointedBlocks
    else:
        raise ValueError(f"model.grad_checkpointing: no checkpointed stages for {type(net).__name__}")
    return net
