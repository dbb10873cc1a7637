"""Linear probe: a softmax classifier trained on frozen, precomputed backbone features.

Features are standardized with the training set's mean and std, then a linear layer is trained by
mini-batch SGD (momentum 0.9, dampening 0, weight decay on weight and bias: torch.optim.SGD's
rule) with a cosine learning rate stepped per epoch (CosineAnnealingLR, T_max = epochs, floor 0).
The cross-entropy gradient is written out by hand, (softmax - onehot) / n, so one step is two
matmuls and no autograd graph: thousands of samples x 512 dims x 100 epochs take well under a
second on one CPU core. The weights start at zero (the problem is convex); the seed fixes the
per-epoch shuffling.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from streamssl.evaluation.knn import accuracy_from_predictions

_MOMENTUM = 0.9
_MIN_STD = 1e-6  # constant features are centred but not scaled


def linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                 test_labels: torch.Tensor, *, num_classes: int, epochs: int = 100, lr: float = 0.1,
                 batch_size: int = 256, weight_decay: float = 0.0, seed: int = 0) -> dict:
    """Train a linear classifier on labelled features and score it on the test features.

    Args:
        train_feats: [M, D] frozen features of the labelled (memory) split.
        train_labels: [M] class ids in [0, num_classes).
        test_feats: [T, D] features to classify, any device (moved to train_feats').
        test_labels: [T] true class ids.
        num_classes: C, the classifier's output size.
        epochs: passes over the training features.
        lr: peak learning rate of the cosine schedule.
        batch_size: samples per SGD step (the last step of an epoch takes the remainder).
        weight_decay: L2 penalty on weight and bias.
        seed: seeds the per-epoch shuffling.

    Returns:
        dict(top1=float in [0, 1], per_class=float64 ndarray [C], NaN for classes absent from test).

    Raises:
        ValueError: inconsistent shapes, labels out of range, or non-positive hyper-parameters.
    """
    _check(train_feats, train_labels, test_feats, test_labels, num_classes, epochs, lr, batch_size,
           weight_decay)
    x, mean, std = _standardize(train_feats)
    y = train_labels.to(x.device, torch.long)
    with _single_thread(x.device):
        weight, bias = _train(x, y, num_classes, epochs, lr, batch_size, weight_decay, seed)
    test = (test_feats.to(x.device, x.dtype) - mean) / std
    pred = F.linear(test, weight, bias).argmax(dim=1)
    return accuracy_from_predictions(pred.cpu(), test_labels.cpu().long(), num_classes)


def protocol_name_linear(epochs: int, lr: float, memory: int, test: int, weight_decay: float = 0.0,
                         origin: str | None = None) -> str:
    """The `protocol` string stored with every linear-probe metric row.

    Example: ``protocol_name_linear(100, 0.1, 1000, 5000)`` ->
    ``"linear epochs=100 lr=0.1 sgd cosine memory=1000 test=5000"``; a non-zero weight decay
    adds ``wd=...`` after ``cosine``, and `origin` (where the test images come from, see
    `knn.protocol_name`) adds ``from=ORIGIN``.
    """
    wd = f" wd={weight_decay:g}" if weight_decay else ""
    where = f" from={origin}" if origin else ""
    return f"linear epochs={epochs} lr={lr:g} sgd cosine{wd} memory={memory} test={test}{where}"


@contextlib.contextmanager
def _single_thread(device: torch.device):
    """One intra-op thread on CPU: the probe's ops are (batch x D x C) small, and splitting them
    across threads only adds synchronization (measured 8x slower with 2 threads on a loaded 2-core
    host, 5000 x 512 x 100 epochs)."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _standardize(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[M, D] -> (standardized [M, D] float, mean [D], std [D]) with the population std."""
    x = feats if feats.dtype == torch.float64 else feats.float()
    mean = x.mean(dim=0)
    std = x.std(dim=0, correction=0).clamp_min(_MIN_STD)
    return (x - mean) / std, mean, std


def _train(x: torch.Tensor, y: torch.Tensor, num_classes: int, epochs: int, lr: float, batch_size: int,
           weight_decay: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SGD with momentum on the softmax cross entropy; returns (weight [C, D], bias [C])."""
    m, d = x.shape
    # weight kept as [C, D]: F.linear(x, W) and grad.T @ x are 3-4x faster on CPU than the
    # skinny x @ W[D, C] and x.T @ grad products
    weight = x.new_zeros(num_classes, d)
    bias = x.new_zeros(num_classes)
    w_buf, b_buf = torch.zeros_like(weight), torch.zeros_like(bias)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        step_lr = 0.5 * lr * (1 + math.cos(math.pi * epoch / epochs))
        order = torch.randperm(m, generator=generator).to(x.device)
        # one gather per epoch (index_select: 3x faster than x[order] on CPU), then contiguous
        # slices instead of a gather per step
        for xb, yb in zip(x.index_select(0, order).split(batch_size), y[order].split(batch_size)):
            grad = torch.softmax(F.linear(xb, weight, bias), dim=1)
            grad[torch.arange(yb.numel(), device=x.device), yb] -= 1
            grad /= yb.numel()
            w_buf.mul_(_MOMENTUM).add_(grad.T @ xb).add_(weight, alpha=weight_decay)
            b_buf.mul_(_MOMENTUM).add_(grad.sum(dim=0)).add_(bias, alpha=weight_decay)
            weight.sub_(w_buf, alpha=step_lr)
            bias.sub_(b_buf, alpha=step_lr)
    return weight, bias




def _check(train_feats, train_labels, test_feats, test_labels, num_classes, epochs, lr, batch_size,
           weight_decay) -> None:
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"linear probe features must be [M, D] and [T, D]; got {tuple(train_feats.shape)} "
                         f"and {tuple(test_feats.shape)}")
    if train_labels.shape != (train_feats.shape[0],) or test_labels.shape != (test_feats.shape[0],):
        raise ValueError(f"linear probe labels must be [{train_feats.shape[0]}] and [{test_feats.shape[0]}], "
                         f"got {tuple(train_labels.shape)} and {tuple(test_labels.shape)}")
    if train_feats.shape[0] == 0:
        raise ValueError("linear probe: no training features")
    if num_classes < 1 or epochs < 1 or batch_size < 1 or lr <= 0 or weight_decay < 0:
        raise ValueError(f"linear probe: need num_classes, epochs, batch_size >= 1, lr > 0, weight_decay >= 0; "
                         f"got {num_classes}, {epochs}, {batch_size}, {lr}, {weight_decay}")
    for name, labels in (("train", train_labels), ("test", test_labels)):
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"linear probe: {name} labels must lie in [0, {num_classes}), "
                             f"got [{int(labels.min())}, {int(labels.max())}]")
