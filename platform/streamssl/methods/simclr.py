"""SimCLR (Chen et al., ICML 2020) as the SCALE repo's online baseline.

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

from streamssl import distributed
from streamssl.augment import CropParams
from streamssl.checks import in_range
from streamssl.losses import nt_xent_loss
from streamssl.methods.twoview import TwoViewMethod, TwoViewParams
from streamssl.models import ModelSpec, projection_mlp


@dataclass(frozen=True)
class SimCLRParams(TwoViewParams):
    temperature: float = 0.5
    p_blur: float = 0.0  # the SCALE repo's SimCLR recipe has no blur (SupContrast's CIFAR recipe)

    def validate(self) -> None:
        super().validate()
        in_range("method.temperature", self.temperature, 0, low_open=True)
        in_range("method.p_blur", self.p_blur, 0, 1)


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


class SimCLR(TwoViewMethod):
    Params = SimCLRParams
    # replay on by default (the learner's accv schedule: B new + B replayed, reservoir memory as
    # the SCALE repo's Co2L/CaSSLe scripts); `learner.replay=false` gives the pure online SimCLR of
    # its run-simclr.sh (add learner.k=10: K updates on the incoming batch only, no memory)
    presets = {"learner.schedule": "accv", "buffer.policy": "reservoir"}

    def __init__(self, params: SimCLRParams, model: ModelSpec) -> None:
        super().__init__(params, model)
        self.proj_dim = model.proj_dim or 128
        self.projector = projection_mlp(self.backbone_dim, model.proj_hidden_dim or 2048, self.proj_dim)
        self.crop_params = CropParams.two_view(model.image_size, scale=tuple(params.crop_scale),
                                               p_blur=params.p_blur)

    def loss(self, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        z1, z2 = z.chunk(2)
        loss = nt_xent_loss(z1, z2, self.params.temperature, **gather_views(z1, z2))
        return loss, {"nt_xent": loss.item()}
