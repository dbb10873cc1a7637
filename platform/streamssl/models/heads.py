"""Projection and prediction heads (EMP-SSL, SimSiam, SimCLR/BYOL); every dimension is an argument.

EMP-SSL (Tong et al. 2023): https://arxiv.org/abs/2304.03977, the head of its code.
SimSiam (Chen and He 2021, MinRed's objective): https://arxiv.org/abs/2011.10566.
SimCLR (Chen et al. 2020): https://arxiv.org/abs/2002.05709; BYOL (Grill et al. 2020): https://arxiv.org/abs/2006.07733.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _linear_bn_relu(in_dim: int, out_dim: int, bias: bool = True) -> list[nn.Module]:
    return [nn.Linear(in_dim, out_dim, bias=bias), nn.BatchNorm1d(out_dim), nn.ReLU(inplace=True)]


def projection_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear-BN-ReLU-Linear head, (B, in_dim) -> (B, out_dim): SimCLR's projector, BYOL's projector and predictor."""
    return nn.Sequential(*_linear_bn_relu(in_dim, hidden_dim), nn.Linear(hidden_dim, out_dim))


class EMPHead(nn.Module):
    """EMP-SSL head: pre_feature = Linear-BN-ReLU, projection = Linear-BN-ReLU-Linear, L2-normalized.

    Args:
        in_dim: backbone feature dimension.
        hidden_dim: width of pre_feature and of the projection's hidden layer (4096 in the paper).
        out_dim: projection dimension d (1024 in the paper).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 1024) -> None:
        super().__init__()
        self.pre_feature = nn.Sequential(*_linear_bn_relu(in_dim, hidden_dim))
        self.projection = nn.Sequential(*_linear_bn_relu(hidden_dim, hidden_dim),
                                        nn.Linear(hidden_dim, out_dim))
        self.out_dim = out_dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) backbone features -> (B, out_dim) unit-norm projections."""
        return F.normalize(self.projection(self.pre_feature(h)), dim=-1)


class SimSiamProjector(nn.Module):
    """SimSiam projector: two Linear(no bias)-BN-ReLU layers, then Linear -> BN(affine=False).

    The last Linear has no bias because the affine-free BN after it removes any bias anyway.

    Args:
        in_dim: backbone feature dimension.
        dim: output dimension (512 for ResNet-18, 2048 for ResNet-50 in MinRed's configs).
        hidden_dim: hidden width; defaults to in_dim as in SimSiam.
    """

    def __init__(self, in_dim: int, dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden = hidden_dim or in_dim
        self.net = nn.Sequential(*_linear_bn_relu(in_dim, hidden, bias=False),
                                 *_linear_bn_relu(hidden, hidden, bias=False),
                                 nn.Linear(hidden, dim, bias=False), nn.BatchNorm1d(dim, affine=False))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, dim), not normalized."""
        return self.net(h)


class SimSiamPredictor(nn.Module):
    """SimSiam predictor: Linear(dim -> pred_dim, no bias)-BN-ReLU -> Linear(pred_dim -> dim).

    Args:
        dim: projector output dimension.
        pred_dim: bottleneck width (128 for ResNet-18, 512 for ResNet-50 in MinRed's configs).
    """

    def __init__(self, dim: int, pred_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(*_linear_bn_relu(dim, pred_dim, bias=False), nn.Linear(pred_dim, dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, dim) -> (B, dim)."""
        return self.net(z)
