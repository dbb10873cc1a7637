"""Difficulty as the distance of a sample to its class mean in a fixed pixel feature space.

Feature space (fixed, deterministic, no training, no download): the image decoded at
`size` x `size` RGB (PIL bilinear, which low-pass filters when shrinking), scaled to [0, 1],
flattened, centred on its own mean and scaled to unit L2 norm. Centring and normalizing per image
remove global brightness and contrast, so the distance measures how far a sample's *pattern* is
from its class prototype; 16 x 16 keeps shape and colour layout while making the class means
small (D = 768; 21,841 ImageNet-21K classes fit in 67 MB of float32).

Why pixels and not the loss scorer's network: the `loss` scorer already measures what a trained
network finds hard; this one is an independent, model-free typicality signal that costs one
decode pass (two when the features do not fit `cache_bytes`), with no randomness at all.
Distances lie in [0, 2] (unit vectors and a mean of unit vectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from streamssl.scoring.images import iter_chunks


@dataclass(frozen=True)
class DistanceParams:
    """Settings of the pixel feature space (recorded in dataset.json with the score)."""

    size: int = 16
    cache_bytes: int = 1 << 30  # keep features in memory up to this, else decode twice


def pixel_features(images: np.ndarray) -> torch.Tensor:
    """uint8 (b, H, W, 3) -> float32 (b, H*W*3) per-image centred, unit-norm pixel vectors.

    A constant image (zero after centring) stays the zero vector.
    """
    x = torch.from_numpy(images).reshape(len(images), -1).float().div_(255)
    x -= x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def score_class_distance(dataset_dir: str | Path, manifest: pd.DataFrame, labels: np.ndarray, info: dict, *,
                         params: DistanceParams, seed: int = 0, progress: bool = True) -> np.ndarray:
    """Euclidean distance of every sample's pixel features to its class's mean feature.

    Args:
        dataset_dir: the prepared dataset folder.
        manifest: its manifest (N rows, source order).
        labels: (N,) int64 class ids in 0..C-1.
        info: its dataset.json (unused: the feature space needs no statistics).
        params: feature-space settings.
        seed: unused (the score is deterministic); kept for the scorer interface.
        progress: tqdm bars.

    Returns:
        (N,) float32 distance per sample, in manifest order.
    """
    dim = params.size * params.size * 3
    cache = [] if len(manifest) * dim * 4 <= params.cache_bytes else None
    num_classes = int(labels.max()) + 1
    sums = torch.zeros(num_classes, dim, dtype=torch.float64)
    for start, images in _chunks(dataset_dir, manifest, params.size, "class means", progress):
        feats = pixel_features(images)
        sums.index_add_(0, torch.from_numpy(labels[start : start + len(images)]), feats.double())
        if cache is not None:
            cache.append(feats)
    counts = torch.from_numpy(np.bincount(labels, minlength=num_classes)).clamp_min(1)
    means = (sums / counts[:, None]).float()  # (C, D)
    chunks = enumerate_cache(cache) if cache is not None else (
        (start, pixel_features(images))
        for start, images in _chunks(dataset_dir, manifest, params.size, "distances", progress))
    out = np.empty(len(manifest), dtype=np.float32)
    for start, feats in chunks:
        y = torch.from_numpy(labels[start : start + len(feats)])
        out[start : start + len(feats)] = (feats - means[y]).norm(dim=1).numpy()
    return out


def _chunks(dataset_dir, manifest: pd.DataFrame, size: int, desc: str, progress: bool):
    return iter_chunks(dataset_dir, manifest, size=size, desc=desc, progress=progress)


def enumerate_cache(cache: list[torch.Tensor]):
    """(start row, features) of cached chunks, as `iter_chunks` yields them."""
    start = 0
    for feats in cache:
        yield start, feats
        start += len(feats)
