"""Evaluation of the backbone during the stream: kNN (SCALE protocol by default, method-spec 4.1)
and a linear probe, both on the same frozen features."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from streamssl.augment import eval_transform, to_model_input
from streamssl.config import RunConfig
from streamssl.evaluation import knn_accuracy, linear_probe, protocol_name, protocol_name_linear
from streamssl.train.skips import load_eval_set


@dataclass
class EvalData:
    """Labelled kNN memory (a random subset of the train split) and a random test subset."""

    memory: torch.Tensor  # uint8 [M, 3, S, S]
    memory_labels: torch.Tensor  # [M]
    test: torch.Tensor  # uint8 [T, 3, S, S]
    test_labels: torch.Tensor  # [T]
    mean: tuple
    std: tuple
    num_classes: int
    skipped: list = field(default_factory=list)  # undecodable images left out ({..., where}, train.skips)
    counts: dict = field(default_factory=dict)  # {"memory"|"test": {in, used, skipped}}


def load_eval_data(config: RunConfig, dataset_dir: Path) -> EvalData:
    from streamssl.ingest import load_dataset_info

    info = load_dataset_info(dataset_dir)
    column = config.stream.label_column
    size, seed, ev = config.model.image_size, config.seed, config.eval
    test_dir = dataset_dir / "test" if (dataset_dir / "test" / "dataset.json").exists() else dataset_dir
    kw = {"size": config.model.read_size, "label_column": column, "strict": config.dataset.strict}
    mem_x, mem_y, (mem_skips, mem_counts) = load_eval_set("memory", dataset_dir, ev.memory_samples, seed, **kw)
    test_x, test_y, (test_skips, test_counts) = load_eval_set("test", test_dir, ev.test_samples, seed + 1, **kw)
    num_classes = info.get("label_columns", {}).get(column, {}).get("num_classes", info["num_classes"])
    return EvalData(to_model_input(mem_x, size), torch.from_numpy(np.array(mem_y)), to_model_input(test_x, size),
                    torch.from_numpy(np.array(test_y)), tuple(info.get("mean") or (0.5,) * 3),
                    tuple(info.get("std") or (0.5,) * 3), int(num_classes), mem_skips + test_skips,
                    {"memory": mem_counts, "test": test_counts})


@torch.no_grad()
def features(model: torch.nn.Module, images: torch.Tensor, data: EvalData, device, batch_size: int) -> torch.Tensor:
    out = []
    for start in range(0, len(images), batch_size):
        x = eval_transform(images[start:start + batch_size].to(device), data.mean, data.std)
        out.append(model.embed(x).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def recalibrated_bn(model: torch.nn.Module, data: EvalData, device, batch_size: int) -> dict:
    """Recompute every BatchNorm's statistics on the kNN memory images; returns the old buffers."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = {id(m): (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
             for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over all the memory batches
    model.train()
    for start in range(0, len(data.memory), batch_size):
        model.embed(eval_transform(data.memory[start:start + batch_size].to(device), data.mean, data.std))
    return {"norms": norms, "saved": saved}


def _restore_bn(state: dict) -> None:
    for m in state["norms"]:
        mean, var, tracked, momentum = state["saved"][id(m)]
        m.running_mean.copy_(mean), m.running_var.copy_(var), m.num_batches_tracked.copy_(tracked)
        m.momentum = momentum


def evaluate_model(model: torch.nn.Module, data: EvalData, config: RunConfig, device, linear: bool = False) -> dict:
    """kNN and, if `linear`, a linear probe on one pass of frozen backbone features.

    Both classifiers are fitted on the labelled memory split and scored on the test split; the
    model is left as it was found (train/eval mode and BatchNorm statistics).

    Returns:
        dict(knn=dict(top1, per_class [C]), knn_protocol=str) plus linear and linear_protocol.
    """
    ev = config.eval
    train_f, test_f, suffix = _frozen_features(model, data, config, device)
    out = {"knn": knn_accuracy(train_f, data.memory_labels, test_f, data.test_labels, k=ev.knn_k,
                               protocol=ev.knn_protocol, temperature=ev.knn_temperature,
                               num_classes=data.num_classes),
           "knn_protocol": protocol_name(ev.knn_protocol, ev.knn_k, len(data.memory), len(data.test),
                                         ev.knn_temperature) + suffix}
    if linear:
        out["linear"] = linear_probe(train_f, data.memory_labels, test_f, data.test_labels,
                                     num_classes=data.num_classes, epochs=ev.linear_epochs, lr=ev.linear_lr,
                                     batch_size=ev.linear_batch_size, weight_decay=ev.linear_weight_decay,
                                     seed=config.seed)
        out["linear_protocol"] = protocol_name_linear(ev.linear_epochs, ev.linear_lr, len(data.memory),
                                                      len(data.test), ev.linear_weight_decay) + suffix
    return out


def knn_eval(model: torch.nn.Module, data: EvalData, config: RunConfig, device) -> tuple[dict, str]:
    """Top-1 and per-class kNN accuracy of backbone features, and the protocol name."""
    out = evaluate_model(model, data, config, device)
    return out["knn"], out["knn_protocol"]


def _frozen_features(model: torch.nn.Module, data: EvalData, config: RunConfig,
                     device) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(memory features [M, D], test features [T, D], protocol suffix) in eval mode."""
    was_training = model.training
    recalibrate = config.eval.bn == "recalibrate"
    bn_state = recalibrated_bn(model, data, device, config.eval.batch_size) if recalibrate else None
    model.eval()
    try:
        train_f = features(model, data.memory, data, device, config.eval.batch_size)
        test_f = features(model, data.test, data, device, config.eval.batch_size)
    finally:
        if bn_state is not None:
            _restore_bn(bn_state)
        model.train(was_training)
    return train_f, test_f, " bn=recalibrated" if recalibrate else ""


def eval_positions(points: list | None, total: int) -> list[int]:
    """Sample counts at which to evaluate: default 0, 10%, ..., 100% of the stream."""
    fractions = points if points is not None else [i / 10 for i in range(11)]
    return sorted({int(round(f * total)) for f in fractions} | {total})


def class_histogram(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels, minlength=num_classes)[:num_classes]
