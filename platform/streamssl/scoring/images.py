"""A prepared dataset's images in bounded chunks: the scorers' only way to read pixels.

Memory stays at one or two chunks whatever the dataset size (13M ImageNet-21K images never
sit in memory together); the next chunk is decoded in a background thread while the caller
computes on the current one.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from streamssl.ingest.reader import decode_rows, shard_root

CHUNK = 4096  # images decoded at once: 4096 x 3 x 32 x 32 bytes = 12 MB at the scorers' sizes


def read_size(rows: pd.DataFrame, size: int) -> int | None:
    """The decode size: None (native) when every image has one size no larger than `size`,
    else `size` (JPEG draft decoding then makes large images cheap to read)."""
    width, height = rows["width"], rows["height"]
    uniform = width.nunique() == 1 and height.nunique() == 1 and int(width.iloc[0]) > 0
    return None if uniform and max(int(width.iloc[0]), int(height.iloc[0])) <= size else size


def iter_chunks(dataset_dir: str | Path, rows: pd.DataFrame, *, size: int | None, desc: str,
                progress: bool = True, chunk: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """Decode the images of `rows` chunk by chunk, in the rows' order.

    Args:
        dataset_dir: the prepared dataset folder.
        rows: manifest rows (key, shard, offset, nbytes, ext).
        size: decode every image at (size, size) (bilinear), or None for the native size.
        desc: progress-bar label.
        progress: show a tqdm bar.
        chunk: images per chunk.

    Yields:
        (start, images): the chunk's first row position in `rows` and uint8 (b, H, W, 3).
    """
    root = shard_root(dataset_dir)
    starts = range(0, len(rows), chunk)

    def decode(start: int) -> np.ndarray:
        return np.stack(decode_rows(root, rows.iloc[start : start + chunk], size))

    with ThreadPoolExecutor(max_workers=1) as pool, tqdm(total=len(rows), desc=desc, unit="img",
                                                         disable=not progress) as bar:
        pending = pool.submit(decode, starts[0]) if len(starts) else None
        for i, start in enumerate(starts):
            images = pending.result()
            pending = pool.submit(decode, starts[i + 1]) if i + 1 < len(starts) else None
            yield start, images
            bar.update(len(images))


def channel_stats(info: dict) -> tuple[list[float], list[float]]:
    """The dataset's per-channel mean/std on [0, 1] (dataset.json), or 0.5 / 0.25 when unknown."""
    mean, std = info.get("mean"), info.get("std")
    return (mean or [0.5] * 3), (std or [0.25] * 3)


class NumThreads:
    """Context manager: torch's intra-op thread count set to `threads` (None: unchanged)."""

    def __init__(self, threads: int | None) -> None:
        self.threads, self.before = threads, torch.get_num_threads()

    def __enter__(self) -> NumThreads:
        if self.threads:
            torch.set_num_threads(int(self.threads))
        return self

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.before)
