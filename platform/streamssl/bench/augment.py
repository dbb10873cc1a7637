"""Batched multi-crop (streamssl.augment.multicrop) against the per-image PIL pipeline, in crops/s.

Both sides run in this one process on the same random images with the EMP-SSL recipe. Each
figure is the best of --repeats timed runs (after one warm-up), the same rule for both sides, so
that other load on a shared machine biases neither. The PIL reference runs with one torch thread
(it is a per-image pipeline; a data loader would parallelize it with processes instead).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from streamssl.augment import CropParams, PILMultiCrop, multicrop
from streamssl.commands._args import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--crops", type=int, nargs="+", default=[10, 20], help="N crops per image")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32], help="image side(s); 224 is optional")
    parser.add_argument("--batch", type=int, default=256, help="images per batched call at 32 px")
    parser.add_argument("--pil-images", type=int, default=48, help="images per PIL timing run")
    parser.add_argument("--threads", type=positive_int, nargs="+", default=[1, 2], help="torch threads for batched")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)


def _best_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _pil_rate(images: np.ndarray, params: CropParams, repeats: int, seed: int) -> float:
    pil = [Image.fromarray(img) for img in images]
    reference = PILMultiCrop(params)
    torch.set_num_threads(1)
    with torch.random.fork_rng():  # torchvision's v1 transforms draw from the global RNG
        torch.manual_seed(seed)
        seconds = _best_seconds(lambda: [reference(img) for img in pil], repeats)
    return len(pil) * params.crops / seconds


def _batched_rate(images: torch.Tensor, params: CropParams, threads: int, repeats: int, seed: int) -> float:
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(seed)
    seconds = _best_seconds(lambda: multicrop(images, params, generator), repeats)
    return images.shape[0] * params.crops / seconds


def run(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    threads_before = torch.get_num_threads()
    head = f"{'size':>5} {'N':>3} {'PIL crops/s':>12}" + "".join(
        f" {f'batched {t}t':>12} {'ratio':>6}" for t in args.threads)
    print(head)
    try:
        for size in args.sizes:
            batch = max(8, args.batch * 32 * 32 // (size * size))  # similar pixels per call at any size
            pixels = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
            images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
            for crops in args.crops:
                ratio = (1.0, 1.0) if size <= 64 else (3 / 4, 4 / 3)  # EMP-SSL: square at 32, free at 224
                params = CropParams(crops=crops, size=size, ratio=ratio)
                pil = _pil_rate(pixels[: args.pil_images], params, args.repeats, args.seed)
                row = f"{size:>5} {crops:>3} {pil:>12,.0f}"
                for t in args.threads:
                    rate = _batched_rate(images, params, t, args.repeats, args.seed)
                    row += f" {rate:>12,.0f} {rate / pil:>5.1f}x"
                print(row, flush=True)
    finally:
        torch.set_num_threads(threads_before)
    print(f"(best of {args.repeats}; batched: {args.batch} images per call at 32 px; "
          f"PIL: {args.pil_images} images, 1 torch thread)")
    return 0
