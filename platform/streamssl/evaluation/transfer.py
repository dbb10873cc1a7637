"""Transfer evaluation: a frozen backbone (a run's, or a backbone file) scored on another prepared
dataset by kNN under both protocols (knn.py) and a linear probe (linear.py), as `streamssl eval`.

The labelled sets are chosen as a run chooses them (train/eval_data.py: a seeded kNN memory from the
train split, a seeded test subset from the test split, no validation subset), and every image is
brought to the model's input as in training: decoded to 3 channels (grayscale repeated, alpha
dropped), zero-padded or resized to the model's input size (`augment.to_model_input`; a dataset of
mixed sizes is resized as it is read) and normalized with `augment.TRAIN_MEAN` / `TRAIN_STD`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streamssl import fsio
from streamssl.errors import ConfigError, renamed
from streamssl.evaluation.knn import knn_accuracy, protocol_name
from streamssl.evaluation.linear import linear_probe, protocol_name_linear

EVAL_FILE = "eval.json"
REPORT_FILE = "report.md"
_EVAL_KEYS = ("knn_k", "knn_temperature", "memory_samples", "test_samples", "batch_size", "linear_epochs",
              "linear_lr", "linear_batch_size", "linear_weight_decay")


@dataclass
class Model:
    """A frozen backbone and what it was trained with."""

    backbone: nn.Module
    name: str  # model.backbone
    image_size: int  # side of the square model input
    source: dict  # file, samples_seen (None: a run's end, or a backbone file), run (dir or None)
    eval_settings: dict  # a run's eval.* (its protocol), {} for a backbone file


class _Embedder(nn.Module):
    """The `embed` interface train/evaluate.py's feature and BatchNorm helpers call."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


def load_model(source: str | Path, *, at: float | None = None, backbone: str | None = None,
               image_size: int | None = None) -> Model:
    """The backbone of a run dir (its end, or the snapshot nearest `at`) or of a backbone file.

    Raises:
        ConfigError: naming SOURCE, --at, --backbone or --image-size.
    """
    from streamssl.export import load_state_strict, read_state, run_backbone_name, run_state
    from streamssl.models import build_backbone

    path = fsio.normpath(source)
    if fsio.is_dir(path):
        name = run_backbone_name(path, "SOURCE")
        if backbone is not None and backbone != name:
            raise ConfigError(f"--backbone: {path} trained a {name}, not a {backbone}")
        state, where = run_state(path, at, "SOURCE")
        run = _run_config(path)
        size = image_size or int(run.get("model", {}).get("image_size", 32))
        settings = run.get("eval") or {}
    elif fsio.is_file(path):
        if at is not None:
            raise ConfigError("--at: snapshots belong to a run; give the run directory as SOURCE")
        if backbone is None:
            raise ConfigError("--backbone: a backbone file needs its architecture (resnet18, resnet18_cifar, ...)")
        name, state, where, size, settings = backbone, read_state(path, "SOURCE"), {"file": path}, image_size, {}
    else:
        raise ConfigError(f"SOURCE: {path} is neither a run directory nor a backbone file")
    with renamed({"model.backbone": "--backbone"}):  # an unknown name is the flag's fault here
        net, _ = build_backbone(name)
    load_state_strict(net, state, where["file"], "--backbone")
    return Model(net.eval(), name, size, {"run": path if fsio.is_dir(path) else None, **where}, settings)


def _run_config(run_dir: str) -> dict:
    import yaml

    try:
        data = yaml.safe_load(fsio.read_text(fsio.join(run_dir, "config.yaml")))
    except (OSError, yaml.YAMLError):
        raise ConfigError(f"SOURCE: {run_dir} has no readable config.yaml (not a run directory?)") from None
    return data if isinstance(data, dict) else {}


def eval_config(model: Model, dataset_dir: str, *, seed: int = 0, overrides: dict | None = None):
    """The RunConfig whose eval section, seed and model size choose and prepare the labelled sets."""
    from streamssl.config import EvalConfig, ModelConfig, RunConfig

    settings = {k: v for k, v in model.eval_settings.items() if k in _EVAL_KEYS}
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    ev = dataclasses.replace(EvalConfig(), **settings, val_samples=0)
    size = model.image_size or _native_size(dataset_dir)
    read = None if _one_size(dataset_dir) else size
    return RunConfig(seed=seed, model=ModelConfig(backbone=model.name, image_size=size, read_size=read), eval=ev)


def _sizes(dataset_dir: str):
    import pandas as pd

    from streamssl.ingest import read_manifest

    test = fsio.join(dataset_dir, "test")
    splits = [dataset_dir] + ([test] if fsio.is_file(fsio.join(test, "manifest.parquet")) else [])
    frame = pd.concat([read_manifest(s, columns=["width", "height"]) for s in splits])
    return frame[(frame.width > 0) & (frame.height > 0)].drop_duplicates()


def _one_size(dataset_dir: str) -> bool:
    return len(_sizes(dataset_dir)) <= 1


def _native_size(dataset_dir: str) -> int:
    sizes = _sizes(dataset_dir)
    if len(sizes) != 1 or sizes.width.iloc[0] != sizes.height.iloc[0]:
        raise ConfigError(f"--image-size: {dataset_dir} has no single square image size; give the model's input size")
    return int(sizes.width.iloc[0])


def transfer_eval(model: Model, dataset_dir: str | Path, *, seed: int = 0, bn: str = "running", linear: bool = True,
                  device: str | torch.device = "cpu", overrides: dict | None = None) -> dict:
    """kNN (scale and cosine protocols) and, with `linear`, the linear probe of the frozen backbone on
    a prepared dataset.

    Args:
        model: from `load_model`.
        dataset_dir: a `streamssl prepare` output folder (any resolution, 1, 3 or 4 channels).
        seed: chooses the memory and test subsets and the probe's shuffling.
        bn: "running" (the backbone's own BatchNorm statistics) or "recalibrate" (recomputed on the
            unlabelled memory images first).
        device: where features are computed.
        overrides: eval.* values (memory_samples, test_samples, knn_k, ...) over the run's.

    Returns:
        The eval.json dict: source, dataset, sizes, and `results`: {knn_scale, knn_cosine, linear}
        each with top1, per_class (NaN: class absent from the test subset) and protocol.
    """
    from streamssl.ingest.dataset import dataset_identity
    from streamssl.train.eval_data import load_eval_data

    dataset_dir = fsio.normpath(dataset_dir)
    if not fsio.is_file(fsio.join(dataset_dir, "dataset.json")):
        raise ConfigError(f"--dataset: {dataset_dir} is not a prepared dataset (no dataset.json)")
    if bn not in ("running", "recalibrate"):
        raise ConfigError(f"--bn: running or recalibrate, got {bn!r}")
    config = eval_config(model, dataset_dir, seed=seed, overrides=overrides)
    data = load_eval_data(config, dataset_dir)
    memory, test = _features(model, data, config, torch.device(device), bn)
    suffix = " bn=recalibrated" if bn == "recalibrate" else ""
    results = _scores(memory, test, data, config, linear, suffix)
    return {"source": model.source, "backbone": model.name, "image_size": config.model.image_size,
            "read_size": config.model.read_size, "dataset": fsio.absolute(dataset_dir),
            "dataset_id": dataset_identity(dataset_dir), "num_classes": data.num_classes, "seed": seed, "bn": bn,
            "memory_samples": len(data.memory), "test_samples": len(data.test), "test_origin": data.test_origin,
            "skipped": data.skipped, "results": results}


def _features(model: Model, data, config, device: torch.device, bn: str) -> tuple[torch.Tensor, torch.Tensor]:
    from streamssl.train.evaluate import features, recalibrated_bn

    net = _Embedder(model.backbone).to(device)
    if bn == "recalibrate":
        recalibrated_bn(net, data, device, config.eval.batch_size)  # the statistics are not put back: a copy
    net.eval()
    size = config.eval.batch_size
    return features(net, data.memory, device, size), features(net, data.test, device, size)


def _scores(memory: torch.Tensor, test: torch.Tensor, data, config, linear: bool, suffix: str) -> dict:
    ev, out = config.eval, {}
    k = min(ev.knn_k, len(memory))
    for protocol in ("scale", "cosine"):
        result = knn_accuracy(memory, data.memory_labels, test, data.test_labels, k=k, protocol=protocol,
                              temperature=ev.knn_temperature, num_classes=data.num_classes)
        name = protocol_name(protocol, k, len(memory), len(test), ev.knn_temperature, origin=data.test_origin)
        out[f"knn_{protocol}"] = {**result, "protocol": name + suffix}
    if linear:
        result = linear_probe(memory, data.memory_labels, test, data.test_labels, num_classes=data.num_classes,
                              epochs=ev.linear_epochs, lr=ev.linear_lr, batch_size=ev.linear_batch_size,
                              weight_decay=ev.linear_weight_decay, seed=config.seed)
        name = protocol_name_linear(ev.linear_epochs, ev.linear_lr, len(memory), len(test), ev.linear_weight_decay,
                                    origin=data.test_origin)
        out["linear"] = {**result, "protocol": name + suffix}
    return out


def write_outputs(result: dict, out_dir: str | Path) -> tuple[str, str]:
    """OUT/eval.json (NaN as null) and OUT/report.md."""
    out = fsio.normpath(out_dir)
    fsio.makedirs(out)
    eval_path = fsio.write_text(fsio.join(out, EVAL_FILE), json.dumps(_jsonable(result), indent=2) + "\n")
    report_path = fsio.write_text(fsio.join(out, REPORT_FILE), render(result))
    return eval_path, report_path


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_TITLES = {"knn_scale": "kNN (scale)", "knn_cosine": "kNN (cosine)", "linear": "linear probe"}


def render(result: dict) -> str:
    """report.md: what was evaluated on what, top-1 per protocol, and the protocol strings."""
    src = result["source"]
    at = "the end of the run" if src.get("samples_seen") is None else f"{src['samples_seen']} samples seen"
    lines = ["# streamssl transfer evaluation", "",
             f"- backbone: `{result['backbone']}` from `{src['file']}` ({at})",
             f"- dataset: `{result['dataset']}` ({result['dataset_id']['name']}, {result['num_classes']} classes)",
             f"- input: {result['image_size']} px, 3 channels, training normalization; BatchNorm: {result['bn']}",
             f"- labelled sets: memory {result['memory_samples']}, test {result['test_samples']} "
             f"(from={result['test_origin']}), seed {result['seed']}", "",
             "| evaluation | top-1 % | protocol |", "|---|---|---|"]
    for key, value in result["results"].items():
        lines.append(f"| {_TITLES.get(key, key)} | {100 * value['top1']:.2f} | `{value['protocol']}` |")
    return "\n".join(lines) + "\n"
