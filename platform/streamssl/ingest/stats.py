"""Per-channel mean/std on [0, 1] (for normalisation), from a seeded subset of images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from streamssl.ingest.reader import choose_rows, decode_rows

STATS_SAMPLES = 10_000  # images from in-memory arrays (cheap)
STATS_DECODED = 1_000  # images decoded back from shards (imagefolder, wds)
_STATS_SIZE = (
    64  # decoded images are reduced to this size first: stats barely move, JPEG decode is 10x+ faster
)


def array_stats(images: np.ndarray, seed: int = 0, limit: int = STATS_SAMPLES) -> tuple[list, list]:
    """Mean and std per RGB channel of uint8 images (N, H, W[, C]); gray counts as 3 equal channels."""
    if len(images) > limit:
        images = images[np.sort(np.random.default_rng(seed).choice(len(images), limit, replace=False))]
    channels = [images] if images.ndim == 3 else [images[..., c] for c in range(min(3, images.shape[-1]))]
    mean, std = [], []
    for x in channels:
        # Exact integer moments: no float copy of the whole subset.
        counts = np.bincount(x.ravel(), minlength=256).astype(np.float64)
        values = np.arange(256) / 255.0
        m = counts @ values / counts.sum()
        mean.append(round(float(m), 6))
        std.append(round(float(np.sqrt(max(counts @ values**2 / counts.sum() - m * m, 0.0))), 6))
    return (mean * 3, std * 3) if len(channels) == 1 else (mean, std)


def decoded_stats(
    root: Path, rows: pd.DataFrame, seed: int = 0, limit: int = STATS_DECODED
) -> tuple[list | None, list | None]:
    """Mean and std per RGB channel over a seeded subset of written samples, decoded at 64x64.

    Args:
        root: the shard root of `rows`.
        rows: manifest rows (key, shard, offset, nbytes, ext).
    """
    images = decode_rows(root, choose_rows(rows, limit, seed), _STATS_SIZE)
    if not images:
        return None, None
    return array_stats(np.stack(images), seed, limit)
