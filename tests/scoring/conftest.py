"""A tiny prepared dataset with deliberately easy (clean) and hard (pure noise) samples."""

from pathlib import Path

import numpy as np
import pytest

from streamssl.ingest.arrays import ArraySplit, prepare_array_split
from streamssl.ingest.prepare_options import PrepareOptions

CLASSES, PER_CLASS, NOISY_PER_CLASS, SIZE = 3, 24, 4, 16


def templates() -> np.ndarray:
    """(C, SIZE, SIZE, 3) uint8: one bright square per class, in different corners and colours."""
    out = np.full((CLASSES, SIZE, SIZE, 3), 30, np.uint8)
    half = SIZE // 2
    for c, (row, col) in enumerate([(0, 0), (0, half), (half, 0)]):
        out[c, row : row + half, col : col + half, c] = 230
    return out


def write_easy_hard(out: Path, seed: int = 0) -> tuple[Path, np.ndarray]:
    """Prepare the dataset; returns (folder, (N,) bool: the sample is pure noise)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(CLASSES), PER_CLASS))
    noisy = np.zeros(len(labels), bool)
    for c in range(CLASSES):
        noisy[rng.choice(np.flatnonzero(labels == c), NOISY_PER_CLASS, replace=False)] = True
    clean = templates()[labels].astype(np.int16) + rng.integers(-12, 13, (len(labels), SIZE, SIZE, 3))
    images = np.where(noisy[:, None, None, None], rng.integers(0, 256, clean.shape), clean)
    split = ArraySplit(images.clip(0, 255).astype(np.uint8), {"label": labels},
                       {"label": [f"c{c}" for c in range(CLASSES)]}, [str(i) for i in range(len(labels))])
    prepare_array_split(split, out, PrepareOptions(source="synthetic", shard_size=20, progress=False), "toy")
    return out, noisy


@pytest.fixture
def easy_hard(tmp_path) -> tuple[Path, np.ndarray]:
    """72 samples of 3 classes in 4 shards, 12 of them (4 per class) pure noise."""
    return write_easy_hard(tmp_path / "toy")
