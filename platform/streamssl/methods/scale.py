"""SCALE (Yu et al., CVPRW 2023): pseudo-supervised contrast + relation distillation + PSA memory.

"SCALE: Online Self-Supervised Lifelong Learning without Prior Knowledge",
https://arxiv.org/abs/2208.11266. Per stream batch (the learner calls `begin_batch` once):
snapshot the past model, augment the B stream images into two views ONCE and keep them for the K
steps; each step adds freshly augmented views of the replayed memory samples and minimizes
L = PSC + w * IRD. w is fixed at the first step where IRD > 0 as
mean(PSC so far) * distill_power / mean(IRD so far), and kept in the state_dict (exact resume).
The memory keeps the PSA subset (buffers/psa.py) of backbone embeddings of memory + new samples.

Choices where the SCALE code is ambiguous or buggy (each switchable where cheap):
- One backbone pass over both views serves the mask, PSC and IRD (the code runs 3-4 passes, so its
  BatchNorm statistics are per view); IRD's current side is view 0 of that pass.
- The past model is the whole network (backbone + projector) at the batch start, in eval mode, no
  gradient (Co2L's IRD). The code reuses the *current* projector on the past backbone's features.
- Memory images x255 twice: the code passes stored [0, 1] tensors times 255 to a transform that
  starts with ToPILImage, which multiplies by 255 again and wraps to uint8, i.e. roughly the
  colour-inverted image x -> (256 - x) mod 256 (an observation, not tested against the code). We
  augment memory images exactly like stream images; `memory_x255_quirk=True` applies the inversion.
- Memory embeddings: the code embeds memory + new images in train mode (BatchNorm batch statistics,
  running statistics updated by an extra forward) and without input normalization. We use eval
  mode and the training normalization (`memory_train_mode=True` gives train-mode BatchNorm).
- Mask features are L2-normalized (see losses/psc.py; `normalize_mask=False` for the raw code).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from streamssl.augment import CropParams, eval_transform, multicrop
from streamssl.checks import in_range
from streamssl.errors import TrainingError
from streamssl.losses import ird_loss, psc_loss, similarity_mask
from streamssl.methods.base import StepOutput
from streamssl.methods.twoview import TwoViewMethod, TwoViewParams, pair_features
from streamssl.models import ModelSpec

_EMBED_CHUNK = 512  # images per forward when embedding the memory


@dataclass(frozen=True)
class ScaleParams(TwoViewParams):
    temperature: float = 0.1  # PSC (temp_cont)
    base_temperature: float = 0.07
    tsne_temperature: float = 0.1
    thres_ratio: float = 0.1  # 0.3 on iid streams (Scale.stream_presets)
    current_temperature: float = 0.1  # IRD, current model
    past_temperature: float = 0.01  # IRD, past model
    distill_power: float = 0.15  # run-scale.sh (argparse default 0.1)
    normalize_mask: bool = True
    memory_x255_quirk: bool = False
    memory_train_mode: bool = False

    def validate(self) -> None:
        super().validate()
        for name in ("temperature", "base_temperature", "tsne_temperature", "current_temperature",
                     "past_temperature"):
            in_range(f"method.{name}", getattr(self, name), 0, low_open=True)
        in_range("method.thres_ratio", self.thres_ratio, 0, 1)
        in_range("method.distill_power", self.distill_power, 0)


class Scale(TwoViewMethod):
    Params = ScaleParams
    presets = {"model.backbone": "resnet18", "learner.schedule": "accv", "learner.stream_batch": 128,
               "learner.k": 20, "learner.lr": 0.03, "learner.momentum": 0.9, "learner.weight_decay": 1e-4,
               "learner.lars": False, "learner.lr_schedule": "constant", "buffer.size": 256, "buffer.policy": "psa"}
    # keys set by stream kind, above `presets` and below explicit values (SCALE's iid runs use 0.3)
    stream_presets: ClassVar[dict[str, dict]] = {"iid": {"method.thres_ratio": 0.3}}
    # every update's images start with the current stream batch (the learner's accv schedule)
    needs_stream_rows: ClassVar[bool] = True

    def __init__(self, params: ScaleParams, model: ModelSpec) -> None:
        super().__init__(params, model)
        self.proj_dim = model.proj_dim or 128
        hidden = model.proj_hidden_dim or self.backbone_dim
        self.projector = nn.Sequential(nn.Linear(self.backbone_dim, hidden), nn.ReLU(inplace=True),
                                       nn.Linear(hidden, self.proj_dim))
        self.crop_params = CropParams.two_view(model.image_size, scale=tuple(params.crop_scale), p_blur=0.0)
        self.register_buffer("ird_weight", torch.zeros((), dtype=torch.float64))  # w; 0 until fixed
        self.register_buffer("loss_sums", torch.zeros(2, dtype=torch.float64))  # sum of PSC, IRD until w is fixed
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None  # (stream images, their 2 views)
        self._past: list[nn.Module] = []  # a list keeps the snapshot out of state_dict and parameters

    def begin_batch(self, images: torch.Tensor, generator: torch.Generator) -> None:
        """Start a stream batch: snapshot the past model and draw the two stream views for all K steps.

        Args:
            images: (n, 3, S, S) uint8 stream images; every following `step` gets them as its first rows.
            generator: the learner's augmentation generator.
        """
        past = copy.deepcopy(nn.Sequential(self.backbone, self.projector)).eval().requires_grad_(False)
        self._past = [past]
        self._batch = (images, multicrop(images, self.crop_params, generator))

    def step(self, images: torch.Tensor, generator: torch.Generator) -> StepOutput:
        """Loss for uint8 images [b, 3, S, S]: the stream batch's rows first, then replayed memory.

        Without `begin_batch` (a bare call) every row is a stream sample with fresh views and
        there is no past model to distill from.
        """
        views, n = self._views(images, generator)  # (2, b, 3, S, S)
        b = views.shape[1]
        x = views.flatten(0, 1)
        h = self.backbone(x)  # (2b, backbone_dim)
        z = F.normalize(self.project(h), dim=-1).view(2, b, -1)
        p = self.params
        mask = similarity_mask(h.view(2, b, -1), n, p.tsne_temperature, p.thres_ratio, p.normalize_mask)
        psc = psc_loss(z, mask, n, p.temperature, p.base_temperature)
        ird = self._ird(x[:b], z[0])
        loss = psc + self._distill_weight(psc, ird) * ird
        parts = {"psc": psc.item(), "ird": ird.item(), "ird_weight": float(self.ird_weight)}
        return StepOutput(loss, pair_features(z[0], z[1]), parts)

    def _views(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """Fixed stream views ++ fresh memory views, and the number of stream rows."""
        if self._batch is None:
            return self.two_views(images, generator), images.shape[0]
        stream, stream_views = self._batch
        n = stream.shape[0]
        if images.shape[0] < n or not torch.equal(images[:n], stream):
            raise TrainingError("scale: an update's first rows must be the stream batch given to begin_batch")
        memory = images[n:]
        if memory.shape[0] == 0:
            return stream_views, n
        if self.params.memory_x255_quirk:
            memory = (256 - memory.int()).remainder(256).to(torch.uint8)
        return torch.cat([stream_views, multicrop(memory, self.crop_params, generator)], dim=1), n

    def _ird(self, x0: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
        """IRD of view 0 against the past model; 0 without one."""
        if not self._past:
            return z0.sum() * 0.0
        with torch.no_grad():
            z_past = self._past[0](x0).float()
        p = self.params
        return ird_loss(z0, z_past, p.current_temperature, p.past_temperature)

    def _distill_weight(self, psc: torch.Tensor, ird: torch.Tensor) -> float:
        """w: fixed at the first step with IRD > 0 from the running means of both losses."""
        if self.ird_weight > 0:
            return float(self.ird_weight)
        self.loss_sums += torch.stack([psc.detach(), ird.detach()]).double()
        if ird.item() > 0:
            # the means share their step count, so the ratio of sums is the ratio of means
            self.ird_weight.fill_(float(self.loss_sums[0] / self.loss_sums[1]) * self.params.distill_power)
        return float(self.ird_weight)

    @torch.no_grad()
    def memory_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Raw backbone embeddings (N, backbone_dim) of uint8 memory + new images, for PSA."""
        was_training = self.backbone.training
        self.backbone.train(self.params.memory_train_mode)
        try:
            cp = self.crop_params
            chunks = [self.backbone(eval_transform(images[i:i + _EMBED_CHUNK], cp.mean, cp.std)).float()
                      for i in range(0, images.shape[0], _EMBED_CHUNK)]
        finally:
            self.backbone.train(was_training)
        return torch.cat(chunks) if chunks else images.new_zeros((0, self.backbone_dim), dtype=torch.float32)
