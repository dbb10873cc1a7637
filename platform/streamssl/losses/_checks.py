"""Shared input checks for the losses (one-line errors instead of deep shape tracebacks)."""

from __future__ import annotations

import torch


def check_crops(z: torch.Tensor, name: str, min_crops: int = 1) -> None:
    if z.ndim != 3:
        raise ValueError(f"{name}: z must be (N crops, b images, d), got shape {tuple(z.shape)}")
    if z.shape[0] < min_crops:
        raise ValueError(f"{name}: needs at least {min_crops} crops per image, got N={z.shape[0]}")


def upcast(t: torch.Tensor) -> torch.Tensor:
    """float64 stays; anything else (bf16/fp16 under autocast) becomes float32."""
    return t if t.dtype == torch.float64 else t.float()
