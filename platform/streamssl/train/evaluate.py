"""Evaluation of the backbone during the stream: kNN (by default SCALE's protocol, Yu et al. 2023) on
the test and validation subsets, a linear probe, and representation health, all on one pass of
frozen features.

Every input goes through `augment.eval_transform`, whose normalization is the training crops' own
(`augment.TRAIN_MEAN` / `TRAIN_STD`), so features are measured on the inputs the network learned on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from streamssl.augment import eval_transform
from streamssl.config import RunConfig
from streamssl.evaluation import knn_accuracy, linear_probe, protocol_name, protocol_name_linear
from streamssl.evaluation.health import crop_cosine, crop_projections, effective_rank, health_generator
from streamssl.train.eval_data import VAL_ORIGIN, EvalData, load_eval_data

__all__ = ["EvalData", "class_histogram", "eval_positions", "evaluate_model", "features",
           "load_eval_data", "recalibrated_bn"]


@dataclass
class Frozen:
    """One evaluation's frozen outputs: backbone features and the health crops' projections."""

    memory: torch.Tensor  # [M, D]
    test: torch.Tensor  # [T, D]
    val: torch.Tensor  # [V, D]
    crops: tuple[torch.Tensor, torch.Tensor]  # (z1, z2) [n, d]: two training crops of each image
    crop_images: str  # which images the crops came from: "val" (or "memory" when there is none)
    suffix: str  # protocol suffix: " bn=recalibrated" or ""


@torch.no_grad()
def features(model: torch.nn.Module, images: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    """Backbone features [n, D] (float32, CPU) of uint8 model inputs [n, 3, S, S]."""
    out = [model.embed(eval_transform(images[start:start + batch_size].to(device))).float().cpu()
           for start in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, 0)


def _save_bn(model: torch.nn.Module) -> dict:
    """Every BatchNorm's running statistics and momentum, for `_restore_bn`."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = {id(m): (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
             for m in norms}
    return {"norms": norms, "saved": saved}


@torch.no_grad()
def recalibrated_bn(model: torch.nn.Module, data: EvalData, device, batch_size: int) -> dict:
    """Recompute every BatchNorm's statistics on the kNN memory images; returns the old buffers."""
    state = _save_bn(model)
    for m in state["norms"]:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over all the memory batches
    model.train()
    for start in range(0, len(data.memory), batch_size):
        model.embed(eval_transform(data.memory[start:start + batch_size].to(device)))
    return state


def _restore_bn(state: dict) -> None:
    for m in state["norms"]:
        mean, var, tracked, momentum = state["saved"][id(m)]
        m.running_mean.copy_(mean), m.running_var.copy_(var), m.num_batches_tracked.copy_(tracked)
        m.momentum = momentum


def evaluate_model(model: torch.nn.Module, data: EvalData, config: RunConfig, device, linear: bool = False) -> dict:
    """kNN on test and validation, health and, if `linear`, a linear probe on one frozen pass.

    Classifiers are fitted on the labelled memory split; the model is left as it was found
    (train/eval mode and BatchNorm statistics), and no training generator is drawn from.

    Returns:
        dict(knn=dict(top1, per_class [C]), knn_protocol=str, val_knn / val_knn_protocol (with a
        validation subset), health={name: value}, health_protocol={name: str}) plus linear and
        linear_protocol.
    """
    ev = config.eval
    frozen = _frozen(model, data, config, device)
    knn = {"k": ev.knn_k, "protocol": ev.knn_protocol, "temperature": ev.knn_temperature,
           "num_classes": data.num_classes}
    name = {"protocol": ev.knn_protocol, "k": ev.knn_k, "memory": len(data.memory), "temperature": ev.knn_temperature}
    out = {"knn": knn_accuracy(frozen.memory, data.memory_labels, frozen.test, data.test_labels, **knn),
           "knn_protocol": protocol_name(**name, test=len(data.test), origin=data.test_origin) + frozen.suffix}
    if len(data.val):
        out["val_knn"] = knn_accuracy(frozen.memory, data.memory_labels, frozen.val, data.val_labels, **knn)
        out["val_knn_protocol"] = protocol_name(**name, test=len(data.val), origin=VAL_ORIGIN,
                                                scored="val") + frozen.suffix
    out.update(_health(frozen, config))
    if linear:
        out["linear"] = linear_probe(frozen.memory, data.memory_labels, frozen.test, data.test_labels,
                                     num_classes=data.num_classes, epochs=ev.linear_epochs, lr=ev.linear_lr,
                                     batch_size=ev.linear_batch_size, weight_decay=ev.linear_weight_decay,
                                     seed=config.seed)
        out["linear_protocol"] = protocol_name_linear(ev.linear_epochs, ev.linear_lr, len(data.memory),
                                                      len(data.test), ev.linear_weight_decay,
                                                      origin=data.test_origin) + frozen.suffix
    return out


def _health(frozen: Frozen, config: RunConfig) -> dict:
    n = len(frozen.crops[0])
    return {"health": {"crop_cosine": crop_cosine(*frozen.crops), "effective_rank": effective_rank(frozen.memory)},
            "health_protocol": {
                "crop_cosine": f"health:crop_cosine views=2 {frozen.crop_images}={n} bn=batch seed={config.seed}",
                "effective_rank": f"health:effective_rank backbone memory={len(frozen.memory)}" + frozen.suffix}}


def _frozen(model: torch.nn.Module, data: EvalData, config: RunConfig, device) -> Frozen:
    """Features of memory, test and validation in eval mode, then the health crops' projections.

    The crops are projected as the training loss sees them, in train mode (BatchNorm on the crop
    batch's statistics; eval-mode statistics of whole images would give augmented crops a shared
    offset that hides how far apart they are), with the running statistics put back afterwards.
    """
    was_training, size = model.training, config.eval.batch_size
    recalibrate = config.eval.bn == "recalibrate"
    crop_images = "val" if len(data.val) else "memory"
    bn_state = recalibrated_bn(model, data, device, size) if recalibrate else _save_bn(model)
    try:
        model.eval()
        feats = [features(model, images, device, size) for images in (data.memory, data.test, data.val)]
        model.train()
        crops = crop_projections(model, data.val if len(data.val) else data.memory, health_generator(config.seed),
                                 size, device)
    finally:
        _restore_bn(bn_state)
        model.train(was_training)
    return Frozen(*feats, crops, crop_images, " bn=recalibrated" if recalibrate else "")


def eval_positions(points: list | None, total: int) -> list[int]:
    """Sample counts at which to evaluate: default 0, 10%, ..., 100% of the stream."""
    fractions = points if points is not None else [i / 10 for i in range(11)]
    return sorted({int(round(f * total)) for f in fractions} | {total})


def class_histogram(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels, minlength=num_classes)[:num_classes]
