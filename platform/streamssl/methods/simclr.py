"""SimCLR (Chen et al., ICML 2020) as the SCALE repo's online baseline (method-spec 5.2).

Two views, projector Linear-BN-ReLU-Linear, NT-Xent with temperature 0.5; the buffer ranks samples
by normalize(z1 + z2). With replay (the default) each update adds B replayed samples; with
`learner.replay=false` every update sees the incoming stream batch only (SimCLR without replay).
With several workers (torch.distributed initialized), the projections are all-gathered so every
anchor sees the negatives of the whole global batch.
https://arxiv.org/abs/2002.05709
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamssl import distributed
from streamssl.augment import CropParams, multicrop
from streamssl.config import ModelConfig
from streamssl.losses import nt_xent_loss
from streamssl.methods.base import Method, MethodParams, StepOutput


@dataclass(frozen=True)
class SimCLRParams(MethodParams):
    temperature: float = 0.5
    crop_scale: tuple = (0.2, 1.0)
    p_blur: float = 0.0  # the SCALE repo's SimCLR recipe has no blur (SupContrast's CIFAR recipe)


def projection_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear-BN-ReLU-Linear head, (B, in_dim) -> (B, out_dim): SimCLR's projector, BYOL's MLPs."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, out_dim))


def gather_views(z1: torch.Tensor, z2: torch.Tensor) -> dict:
    """nt_xent_loss's cross-worker keywords: all-gathered views and this rank's offset.

    Empty on a single process. The gather is differentiable, so each rank's keys send gradients
    back to the rank that produced them and the averaged gradient is the global-batch one.
    Batch sizes may differ between ranks (the offset counts the rows of lower ranks).
    """
    if not distributed.is_distributed():
        return {}
    both = torch.cat([z1, z2], dim=1)  # (b, 2d): one collective for the two views
    gathered = distributed.all_gather_with_grad(both)  # (sum of b over ranks, 2d)
    counts, _ = distributed.all_gather_varlen(torch.tensor([z1.shape[0]], device=z1.device))
    offset = int(counts[:distributed.rank()].sum())
    d = z1.shape[1]
    return {"z1_all": gathered[:, :d], "z2_all": gathered[:, d:], "offset": offset}


class SimCLR(Method):
    Params = SimCLRParams
    # replay on by default (the learner's accv schedule: B new + B replayed, reservoir memory as
    # the SCALE repo's Co2L/CaSSLe scripts); `learner.replay=false` gives the pure online SimCLR of
    # its run-simclr.sh (add learner.k=10: K updates on the incoming batch only, no memory)
    presets = {"learner.schedule": "accv", "buffer.policy": "reservoir"}

    def __init__(self, params: SimCLRParams, model: ModelConfig) -> None:
        super().__init__(params, model)
        self.feature_dim = model.proj_dim or 128
        self.projector = projection_mlp(self.feat_dim, model.proj_hidden_dim or 2048, self.feature_dim)
        self.crop_params = CropParams.two_view(model.image_size, scale=tuple(params.crop_scale),
                                               p_blur=params.p_blur)

    def step(self, images: torch.Tensor, generator: torch.Generator) -> StepOutput:
        views = multicrop(images, self.crop_params, generator)  # [2, b, 3, S, S]
        b = views.shape[1]
        z = self.projector(self.backbone(views.flatten(0, 1))).float()  # [2b, dim]
        z1, z2 = z[:b], z[b:]
        loss = nt_xent_loss(z1, z2, self.params.temperature, **gather_views(z1, z2))
        feats = F.normalize((z1 + z2).detach(), dim=-1)
        return StepOutput(loss, feats, {"nt_xent": loss.item()})
