"""The method contract: an SSL objective that turns a batch of uint8 images into a loss.

The learner (streamssl.train.learner) owns the buffer, the optimizer and the replay schedule; a
method only augments, forwards and scores, and hands back the per-sample features the buffer
ranks by. Everything a method may provide is declared on `Method` with its default, so the rest
of the code never asks whether a method has something:

  class attributes  Params, presets, stream_presets, needs_stream_rows, needs_labels,
                    provides_sample_loss
  hooks             begin_batch, step (required), after_step, memory_embeddings, project, two_views,
                    embed, operating_warnings
  widths            backbone_dim (backbone output), proj_dim (projection output = StepOutput.features)

docs/adding-a-method.md walks through adding one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from streamssl.augment import CropParams, eval_transform, multicrop
from streamssl.checks import finite_numbers, require
from streamssl.export import load_backbone_into
from streamssl.models import ModelSpec, build_backbone
from streamssl.models.backbones import enable_grad_checkpointing

_EMBED_CHUNK = 512  # images per forward when embedding the memory


@dataclass(frozen=True)
class MethodParams:
    """Base of every method's parameter dataclass; its fields are the pipeline's `method.*` keys."""

    def validate(self) -> None:
        """Raise ConfigError naming `method.<field>` for a value out of range.

        The base checks that every number is finite; subclasses call it and add their own ranges.
        """
        finite_numbers("method", self)


def check_crop_scale(value: tuple) -> None:
    require(len(value) == 2 and 0 < value[0] <= value[1] <= 1,
            f"method.crop_scale: [lo, hi] with 0 < lo <= hi <= 1, got {value}")


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar, with grad
    features: torch.Tensor  # (B, proj_dim) detached, L2-normalized: what the buffer's EMA tracks
    parts: dict[str, float]  # named loss terms for logging
    # (B,) detached per-image loss; set by methods with `provides_sample_loss` (what `buffer.policy:
    # hard` keeps an EMA of), None otherwise
    sample_loss: torch.Tensor | None = None


class Method(nn.Module):
    """Backbone + method-specific heads; subclasses implement `step` and `project`.

    Attributes set in __init__:
        backbone: (B, 3, S, S) normalized float images -> (B, backbone_dim) pooled features.
        backbone_dim: the backbone's output width (what kNN, probes and PSA read).
        proj_dim: the width of `project`'s output and of `StepOutput.features` (what the buffer's
            EMA tracks); subclasses set it from `model.proj_dim` or their own default.
        crop_params: the training augmentation, read by the default `two_views` (a method that
            overrides `two_views`, as BYOL with its two recipes, need not set it).
    """

    Params: ClassVar[type[MethodParams]] = MethodParams
    # learner/buffer/model keys this method sets unless the user sets them explicitly
    presets: ClassVar[dict] = {}
    # keys set per stream kind, above `presets` and below explicit values: {kind: {key: value}}
    stream_presets: ClassVar[dict[str, dict]] = {}
    # every update's rows start with the current stream batch, as given to `begin_batch`; only
    # schedules that train on the stream batch (accv) can run such a method
    needs_stream_rows: ClassVar[bool] = False
    # True: `step` also gets `labels=` (B,) long, the buffer's labels of its images (the supervised
    # reference learner); every other method trains without labels and is called without them
    needs_labels: ClassVar[bool] = False
    # True: every `step` sets `StepOutput.sample_loss`; policies with `needs_sample_loss` (hard)
    # are refused, naming buffer.policy, for methods that do not
    provides_sample_loss: ClassVar[bool] = False

    proj_dim: int
    crop_params: CropParams

    def __init__(self, params: MethodParams, model: ModelSpec) -> None:
        super().__init__()
        self.params = params
        self.image_size = model.image_size
        self.backbone, self.backbone_dim = build_backbone(model.backbone)
        if model.init_from is not None:  # before any head or target (BYOL's) copies the backbone
            load_backbone_into(self.backbone, model.init_from)
        if model.grad_checkpointing:
            enable_grad_checkpointing(self.backbone)

    @classmethod
    def operating_warnings(cls, params: MethodParams) -> list[str]:
        """Settings outside the method's operating regime, one message per problem, naming the key.

        A pure function of the params: the runner logs these at run start and records them in
        run.json (`warnings`), and the report lists them. The run is not refused. Default: none.
        """
        del params
        return []

    def begin_batch(self, images: torch.Tensor, generator: torch.Generator) -> None:
        """Called once per stream batch before its updates, under schedules that train on it (accv).

        Args:
            images: (B, 3, S, S) uint8, the stream batch; every following `step` gets them as its
                first rows. Default: nothing to prepare.
            generator: the learner's augmentation generator.
        """
        del images, generator

    def step(self, images: torch.Tensor, generator: torch.Generator) -> StepOutput:
        """Loss for uint8 images (B, 3, S, S) on the training device, crops drawn from `generator`.

        A method with `needs_labels` declares `step(self, images, generator, labels)` instead.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement step")

    def after_step(self, update: int, total_updates: int) -> None:
        """Called after optimizer update number `update` (1-based) of `total_updates`; default: nothing.

        For state that follows the weights outside the optimizer (BYOL's EMA target).
        """
        del update, total_updates

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Projection head: (B, backbone_dim) backbone features -> (B, proj_dim)."""
        raise NotImplementedError(f"{type(self).__name__} must implement project")

    def two_views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Two training crops of every uint8 image, (2, B, 3, S, S) normalized, as `step` draws them.

        Default: two crops of `crop_params`. The health diagnostics compare their projections.
        """
        return multicrop(images, dataclasses.replace(self.crop_params, crops=2), generator)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, backbone_dim) of normalized float images, for kNN and probes."""
        return self.backbone(x)

    @torch.no_grad()
    def memory_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone embeddings (N, backbone_dim) float32 of uint8 buffer images, for policies that
        rank them (`SelectionPolicy.embeds`, PSA).

        Default: `embed` in eval mode, inputs normalized as the training crops (augment.TRAIN_MEAN/STD).
        """
        was_training = self.training
        self.eval()
        try:
            return torch.cat([self.embed(eval_transform(images[i:i + _EMBED_CHUNK])).float()
                              for i in range(0, images.shape[0], _EMBED_CHUNK)])
        finally:
            self.train(was_training)
