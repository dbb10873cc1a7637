"""SGD wrapped in LARS (solo-learn / EMP-SSL flavour) and per-update learning-rate schedules."""

from __future__ import annotations

import math

import torch
from torch import nn


class LARS(torch.optim.SGD):
    """SGD whose multi-dimensional parameters get a layer-wise trust ratio.

    For a weight p with gradient g: ratio = eta * |p| / (|g| + wd * |p| + 1e-8); with clipping the
    applied factor is min(ratio / lr, 1). Weight decay is folded into g before scaling. 1-D
    parameters (biases, norms) are excluded from LARS and, as in the authors' code, get no weight
    decay.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4,
                 eta: float = 0.005, clip: bool = True, nesterov: bool = False) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=0.0, nesterov=nesterov)
        self.lars_weight_decay = weight_decay
        self.eta = eta
        self.clip = clip

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.ndim > 1:
                    self._scale(p, group["lr"])
        return super().step(closure)

    def _scale(self, p: torch.Tensor, lr: float) -> None:
        wd = self.lars_weight_decay
        p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(p.grad)
        ratio = self.eta * p_norm / (g_norm + wd * p_norm + 1e-8)
        if self.clip:
            ratio = torch.clamp(ratio / lr, max=1.0)
        ratio = torch.where((p_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
        p.grad.add_(p, alpha=wd).mul_(ratio)


def build_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float,
                    lars: bool, eta: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if lars:
        return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def learning_rate(base_lr: float, schedule: str, update: int, total_updates: int, warmup: int = 0) -> float:
    """LR for this update (0-based): a linear warmup over the first `warmup` updates, then
    constant, or cosine from base_lr to 0 over the remaining updates."""
    if update < warmup:
        return base_lr * (update + 1) / warmup
    if schedule == "constant" or total_updates <= warmup:
        return base_lr
    span = total_updates - warmup
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(update - warmup, span) / span))


LR_SCALINGS = ("none", "linear", "sqrt")


def scaled_lr(base_lr: float, scaling: str, global_batch: int, reference_batch: int) -> float:
    """The learning rate for a global batch, scaled from the one set for `reference_batch`:
    linear (Goyal et al. 2017: lr x global / reference) or square root (for adaptive optimizers
    and LARS at large batches, You et al. 2020)."""
    if scaling not in LR_SCALINGS:
        raise ValueError(f"lr_scaling: one of {', '.join(LR_SCALINGS)}, got {scaling!r}")
    if scaling == "none":
        return base_lr
    ratio = global_batch / reference_batch
    return base_lr * (ratio if scaling == "linear" else math.sqrt(ratio))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
