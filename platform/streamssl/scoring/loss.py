"""Difficulty as out-of-fold cross-entropy of a small supervised reference network.

Samples are split at random into K folds. For each fold a fresh cnn4 + linear classifier is
trained (Adam, cross-entropy, a few epochs) on a seeded subset of the *other* folds, and it scores
the samples of its own fold. A network never scores a sample it was trained on, so the loss is
what the sample costs to a model that has not memorized it (in-fold losses collapse towards 0
for every sample after a few epochs and rank mostly noise). The training subset is capped
(`train_samples` per fold), which bounds memory and time on huge datasets; the scoring pass then
reads every image once, in manifest order, with all K networks loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from streamssl.augment import eval_transform, to_model_input
from streamssl.models import build_backbone
from streamssl.scoring.images import channel_stats, iter_chunks, read_size


@dataclass(frozen=True)
class LossParams:
    """Settings of the reference networks (recorded in dataset.json with the score)."""

    folds: int = 2
    epochs: int = 3
    train_samples: int = 10_000  # per fold, drawn from the other folds
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 5e-4
    image_size: int = 32
    backbone: str = "cnn4"


def score_loss(dataset_dir: str | Path, manifest: pd.DataFrame, labels: np.ndarray, info: dict, *,
               params: LossParams, seed: int, progress: bool = True) -> np.ndarray:
    """Out-of-fold cross-entropy of every sample.

    Args:
        dataset_dir: the prepared dataset folder.
        manifest: its manifest (N rows, source order).
        labels: (N,) int64 class ids in 0..C-1.
        info: its dataset.json (channel statistics).
        params: reference-network settings.
        seed: seeds the folds, the training subsets, the initial weights and the batch order.
        progress: tqdm bars.

    Returns:
        (N,) float32 loss per sample, in manifest order.
    """
    data = _Data(dataset_dir, manifest, labels, info, progress)
    fold_of = np.random.default_rng([seed, 0]).permutation(len(labels)) % params.folds  # (N,)
    models = [_fit_fold(data, np.flatnonzero(fold_of != k), k, params, seed) for k in range(params.folds)]
    return _out_of_fold_loss(data, fold_of, models, params)


@dataclass(frozen=True)
class _Data:
    dataset_dir: str | Path
    manifest: pd.DataFrame
    labels: np.ndarray  # (N,) int64
    info: dict
    progress: bool


def _fit_fold(data: _Data, outside: np.ndarray, k: int, params: LossParams, seed: int) -> nn.Module:
    """Train fold k's network on up to `train_samples` of the rows `outside` fold k."""
    rng = np.random.default_rng([seed, 1, k])
    chosen = np.sort(rng.choice(outside, min(params.train_samples, len(outside)), replace=False))
    images = _load_inputs(data.dataset_dir, data.manifest.iloc[chosen], params.image_size,
                          f"fold {k + 1}/{params.folds} read", data.progress)
    model = _reference_network(params.backbone, int(data.labels.max()) + 1, seed * 1009 + k)
    _train(model, images, torch.from_numpy(data.labels[chosen]), data.info, params, seed * 1009 + k)
    return model.eval()


def _load_inputs(dataset_dir, rows: pd.DataFrame, size: int, desc: str, progress: bool) -> torch.Tensor:
    """uint8 (M, 3, size, size) model inputs of `rows` (M <= train_samples, so bounded)."""
    out = torch.empty((len(rows), 3, size, size), dtype=torch.uint8)
    for start, images in iter_chunks(dataset_dir, rows, size=read_size(rows, size), desc=desc,
                                     progress=progress):
        out[start : start + len(images)] = to_model_input(images, size)
    return out


def _reference_network(backbone: str, num_classes: int, seed: int) -> nn.Module:
    """backbone + linear classifier, initialized from `seed` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net, dim = build_backbone(backbone)
        return nn.Sequential(net, nn.Linear(dim, num_classes))


def _train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, info: dict, params: LossParams,
           seed: int) -> None:
    """Adam on the cross-entropy; images (M, 3, S, S) uint8, labels (M,) int64."""
    mean, std = channel_stats(info)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    model.train()
    for _ in range(params.epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order), params.batch_size):
            idx = order[start : start + params.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on one sample
                continue
            loss = F.cross_entropy(model(eval_transform(images[idx], mean, std)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


@torch.no_grad()
def _out_of_fold_loss(data: _Data, fold_of: np.ndarray, models: list[nn.Module], params: LossParams) -> np.ndarray:
    """One pass over every image: sample i's loss under the network of its own (held-out) fold."""
    mean, std = channel_stats(data.info)
    out = np.empty(len(data.manifest), dtype=np.float32)
    size = params.image_size
    for start, images in iter_chunks(data.dataset_dir, data.manifest, size=read_size(data.manifest, size),
                                     desc="loss score", progress=data.progress):
        rows = slice(start, start + len(images))
        x = eval_transform(to_model_input(images, size), mean, std)
        y, fold = torch.from_numpy(data.labels[rows]), torch.from_numpy(fold_of[rows])
        loss = torch.empty(len(images))
        for k, model in enumerate(models):
            mine = (fold == k).nonzero().squeeze(1)
            for part in mine.split(params.batch_size * 4):  # bounded activations at any chunk size
                loss[part] = F.cross_entropy(model(x[part]), y[part], reduction="none")
        out[rows] = loss.numpy()
    return out
