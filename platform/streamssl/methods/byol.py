"""BYOL (Grill et al., NeurIPS 2020): online network + predictor vs an EMA target.

Online: backbone -> projector (backbone_dim -> 4096 -> 256) -> predictor (256 -> 4096 -> 256).
Target: an EMA copy of backbone + projector, never seen by the optimizer (its parameters do not
require grad, and the learner's optimizer takes only parameters that do). After every optimizer
step xi <- tau xi + (1 - tau) theta with tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, rising
from tau_base to 1 over the run's K updates. The target's BatchNorm running statistics are copied
from the online network (only parameters are averaged); the target runs in the module's
train/eval mode, so in training it normalizes with its own batch statistics, as in the paper.
https://arxiv.org/abs/2006.07733
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from streamssl.augment import CropParams, multicrop
from streamssl.checks import in_range
from streamssl.losses import byol_loss
from streamssl.methods.twoview import TwoViewMethod, TwoViewParams
from streamssl.models import ModelSpec, projection_mlp


@dataclass(frozen=True)
class BYOLParams(TwoViewParams):
    tau_base: float = 0.996  # EMA decay at the first update
    pred_hidden_dim: int | None = None  # predictor width; None: the projector's (4096)
    # crop_scale (0.2, 1): BYOL's ImageNet recipe uses (0.08, 1)

    def validate(self) -> None:
        super().validate()
        in_range("method.tau_base", self.tau_base, 0, 1)
        in_range("method.pred_hidden_dim", self.pred_hidden_dim, 1, none_ok=True)


def target_tau(tau_base: float, update: int, total_updates: int) -> float:
    """BYOL's cosine EMA schedule: tau_base at update 0, 1 at update total_updates (and beyond)."""
    if total_updates <= 0:
        return tau_base
    progress = min(update, total_updates) / total_updates
    return 1 - (1 - tau_base) * (math.cos(math.pi * progress) + 1) / 2


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * online for parameters; buffers (BN statistics) copied.

    Both modules must have the same structure; runs as one fused foreach op per call.
    """
    t_params, o_params = list(target.parameters()), list(online.parameters())
    torch._foreach_lerp_(t_params, o_params, 1 - tau)
    for t_buf, o_buf in zip(target.buffers(), online.buffers()):
        t_buf.copy_(o_buf)


class _Encoder(nn.Module):
    """Backbone + projector: the part of the online network the target copies."""

    def __init__(self, backbone: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.backbone, self.projector = backbone, projector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))


class BYOL(TwoViewMethod):
    Params = BYOLParams
    presets = {"learner.schedule": "accv", "buffer.policy": "reservoir"}

    def __init__(self, params: BYOLParams, model: ModelSpec) -> None:
        super().__init__(params, model)
        self.proj_dim = model.proj_dim or 256
        hidden = model.proj_hidden_dim or 4096
        self.online = _Encoder(self.backbone, projection_mlp(self.backbone_dim, hidden, self.proj_dim))
        self.predictor = projection_mlp(self.proj_dim, params.pred_hidden_dim or hidden, self.proj_dim)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        # BYOL's asymmetric views: blur always on view 1, rarely on view 2; solarize only on view 2
        shared = dict(scale=tuple(params.crop_scale), crops=1)
        self.view_params = (CropParams.two_view(model.image_size, p_blur=1.0, p_solarize=0.0, **shared),
                            CropParams.two_view(model.image_size, p_blur=0.1, p_solarize=0.2, **shared))

    def two_views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """View 1 from the first recipe, view 2 from the second: (2, B, 3, S, S)."""
        return torch.cat([multicrop(images, p, generator) for p in self.view_params])

    def project(self, features: torch.Tensor) -> torch.Tensor:
        # not cast to float32: the buffer feature sums the two views in the autocast dtype, as
        # the predictor sees them; byol_loss upcasts on its own
        return self.online.projector(features)

    def loss(self, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        p = self.predictor(z)
        with torch.no_grad():
            t = self.target(x)
        p1, p2, t1, t2 = (*p.chunk(2), *t.chunk(2))
        loss = byol_loss(p1, p2, t1, t2)
        return loss, {"byol": loss.item()}

    def after_step(self, update: int, total_updates: int) -> None:
        """EMA the target after update `update` (1-based), with tau of step k = update - 1.

        tau depends on the update count only, so a resumed run continues the same schedule.
        """
        ema_update(self.target, self.online, target_tau(self.params.tau_base, update - 1, total_updates))
