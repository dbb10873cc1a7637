"""kNN evaluation of the backbone during the stream (SCALE protocol by default, method-spec 4.1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamssl.augment import eval_transform, to_model_input
from streamssl.config import RunConfig
from streamssl.evaluation import knn_accuracy, protocol_name


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


def load_eval_data(config: RunConfig, dataset_dir: Path) -> EvalData:
    from streamssl.ingest import load_dataset_info, load_images

    info = load_dataset_info(dataset_dir)
    column = config.stream.label_column
    size, seed, ev = config.model.image_size, config.seed, config.eval
    test_dir = dataset_dir / "test" if (dataset_dir / "test" / "dataset.json").exists() else dataset_dir
    read = config.model.read_size
    mem_x, mem_y = load_images(dataset_dir, ev.memory_samples, seed=seed, size=read, label_column=column)
    test_x, test_y = load_images(test_dir, ev.test_samples, seed=seed + 1, size=read, label_column=column)
    num_classes = info.get("label_columns", {}).get(column, {}).get("num_classes", info["num_classes"])
    return EvalData(to_model_input(mem_x, size), torch.from_numpy(np.array(mem_y)), to_model_input(test_x, size),
                    torch.from_numpy(np.array(test_y)), tuple(info.get("mean") or (0.5,) * 3),
                    tuple(info.get("std") or (0.5,) * 3), int(num_classes))


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


def knn_eval(model: torch.nn.Module, data: EvalData, config: RunConfig, device) -> tuple[dict, str]:
    """Top-1 and per-class kNN accuracy of backbone features; the model is left as it was found."""
    was_training = model.training
    bn_state = recalibrated_bn(model, data, device, config.eval.batch_size) if config.eval.bn == "recalibrate" else None
    model.eval()
    try:
        ev = config.eval
        train_f = features(model, data.memory, data, device, ev.batch_size)
        test_f = features(model, data.test, data, device, ev.batch_size)
        result = knn_accuracy(train_f, data.memory_labels, test_f, data.test_labels, k=ev.knn_k,
                              protocol=ev.knn_protocol, temperature=ev.knn_temperature,
                              num_classes=data.num_classes)
    finally:
        if bn_state is not None:
            _restore_bn(bn_state)
        model.train(was_training)
    name = protocol_name(ev.knn_protocol, ev.knn_k, len(data.memory), len(data.test), ev.knn_temperature)
    if bn_state is not None:
        name += " bn=recalibrated"
    return result, name


def eval_positions(points: list | None, total: int) -> list[int]:
    """Sample counts at which to evaluate: default 0, 10%, ..., 100% of the stream."""
    fractions = points if points is not None else [i / 10 for i in range(11)]
    return sorted({int(round(f * total)) for f in fractions} | {total})


def class_histogram(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels, minlength=num_classes)[:num_classes]
