"""Online supervised learner: the labelled reference of Imai et al. 2024 (their Figure 2).

Cross-entropy of a linear classifier on the backbone's features, over N crops of every image of
the update: the stream batch and the replayed entries, with their labels from the replay buffer.
Same backbone, schedule, buffer and policy as the self-supervised methods, so the gap between
them is what the labels buy. The buffer tracks normalize(mean over crops of the backbone
features): the method has no projection head, so proj_dim = backbone_dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamssl.augment import CropParams, multicrop
from streamssl.checks import in_range, require
from streamssl.methods.base import Method, MethodParams, StepOutput, check_crop_scale
from streamssl.models import ModelSpec


@dataclass(frozen=True)
class SupervisedParams(MethodParams):
    # the classifier's outputs; 0: the dataset's number of classes, filled in when a run starts
    # (`resolve.with_dataset_classes`)
    classes: int = 0
    crops: int = 2  # N: crops per image, each scored by the cross-entropy
    crop_scale: tuple = (0.2, 1.0)  # RandomResizedCrop area range (the two-view methods' recipe)

    def validate(self) -> None:
        super().validate()
        in_range("method.classes", self.classes, 0)
        in_range("method.crops", self.crops, 1)
        check_crop_scale(self.crop_scale)


class Supervised(Method):
    Params = SupervisedParams
    presets = {"learner.schedule": "accv", "buffer.policy": "diverse"}
    needs_labels = True
    provides_sample_loss = True

    def __init__(self, params: SupervisedParams, model: ModelSpec) -> None:
        super().__init__(params, model)
        require(params.classes >= 1, "method.classes: the supervised learner needs the number of classes "
                                     "(a run fills it from the dataset; set it when building the method alone)")
        self.proj_dim = self.backbone_dim
        self.classifier = nn.Linear(self.backbone_dim, params.classes)
        self.crop_params = CropParams(crops=params.crops, size=model.image_size, scale=tuple(params.crop_scale),
                                      ratio=(3 / 4, 4 / 3))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """No projection head: the L2-normalized backbone features, float32."""
        return F.normalize(features.float(), dim=-1)

    def step(self, images: torch.Tensor, generator: torch.Generator, labels: torch.Tensor) -> StepOutput:
        n_cls = self.params.classes
        require(labels.numel() == 0 or 0 <= int(labels.min()) and int(labels.max()) < n_cls,
                f"method.classes: {n_cls} classes, but the stream holds label {int(labels.max())}")
        crops = multicrop(images, self.crop_params, generator)  # (N, B, 3, S, S)
        n, b = crops.shape[:2]
        feats = self.backbone(crops.flatten(0, 1))  # (N*B, backbone_dim), crop-major
        logits = self.classifier(feats).float()
        per_crop = F.cross_entropy(logits, labels.to(logits.device).repeat(n), reduction="none").view(n, b)
        loss = per_crop.mean()
        with torch.no_grad():
            accuracy = (logits.argmax(1) == labels.to(logits.device).repeat(n)).float().mean().item()
            features = F.normalize(feats.detach().float().view(n, b, -1).mean(0), dim=-1)
        return StepOutput(loss, features, {"ce": loss.item(), "train_acc": accuracy},
                          sample_loss=per_crop.detach().mean(0))
