"""Pipeline configuration schema: typed sections, YAML deltas, dotted `key=value` overrides.

The defaults live here and only here. This module knows no method or policy: `streamssl.resolve`
applies the chosen method's presets, checks the `method` and `buffer.params` sections against
the registered Params and validates the whole config (`resolve.load` is the entry point).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamssl.errors import ConfigError, first_line


@dataclass(frozen=True)
class DatasetConfig:
    source: str = "synthetic"  # a `streamssl prepare` source
    path: str | None = None  # input for the source (folder of idx/pickle/images/shards)
    dir: str | None = None  # a prepared dataset dir (holds dataset.json); default: prepared into a cache dir
    options: dict = field(default_factory=dict)  # source options, e.g. classes, samples_per_class
    strict: bool = False  # stop at the first bad sample (prepare, stream, run) instead of skipping it


@dataclass(frozen=True)
class StreamConfig:
    kind: str = "seq"
    samples_per_class: int | list | None = None
    blend_ratio: float = 0.5
    class_order: str = "natural"
    label_column: str = "label"
    classes_per_segment: int = 1
    order_by: str | None = None
    seed: int | None = None  # default: the run's seed
    virtual: bool = False  # index only: read samples from the dataset's shards by byte range (no copy)


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet18_cifar"
    image_size: int = 32
    proj_hidden_dim: int | None = None  # projection head width; None: the method's default
    proj_dim: int | None = None  # projection output size; None: the method's default
    read_size: int | None = None  # resize images to this square size when reading (mixed-size data)
    init_from: str | None = None  # a backbone file or a finished run dir: start from its backbone
    # recompute each backbone stage's activations in the backward pass (ResNets, cnn4): less
    # memory for many large crops, about a third more backbone compute
    grad_checkpointing: bool = False


@dataclass(frozen=True)
class LearnerConfig:
    stream_batch: int = 100  # B: samples arriving per stream step
    k: int = 10  # K: updates per stream batch
    schedule: str = "accv"  # accv | minred
    lr: float = 0.03
    lr_schedule: str = "constant"  # constant | cosine (per update)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lars: bool = True
    lars_eta: float = 0.005
    bf16: bool | str = "auto"  # auto | true | false
    # measured faster for every conv backbone here, CPU (cnn4: 1.25x) and GPU
    channels_last: bool = True
    threads: int | None = None  # torch threads; default: the CPUs given to the worker
    grad_cosine: bool = True  # log cosine similarity of consecutive update gradients
    replay: bool = True  # accv: false trains on the incoming batch only and keeps no memory
    # lr for the global batch (num_workers x stream_batch), scaled from lr_reference_batch:
    # none | linear (Goyal et al. 2017) | sqrt
    lr_scaling: str = "none"
    lr_reference_batch: int = 100
    warmup_updates: int = 0  # linear warmup over the first updates, then lr_schedule
    # how replayed entries are drawn from the buffer: uniform, or density (probability inversely
    # proportional to the entry's local feature density in the buffer; buffers/density.py)
    replay_weighting: str = "uniform"


@dataclass(frozen=True)
class BufferConfig:
    size: int = 256
    policy: str = "diverse"
    ema_alpha: float = 0.5  # weight on the OLD feature in the EMA
    # stream batches during which a newly inserted sample cannot be removed by a resize: 1 is the
    # authors' code, whose DataLoader prefetching leaves a new batch unseen at its first resize
    # (it always survives it); 0 is the synchronous loop, where it can go at once
    protect_new: int = 0
    params: dict = field(default_factory=dict)  # the policy's Params fields, e.g. {neighbours: 8} for diverse


@dataclass(frozen=True)
class EvalConfig:
    # stream fractions; default 0, 0.1, ..., 1.0; "segments" (alone or as an item): every segment end
    points: list | str | None = None
    snapshots: bool = False  # also save the backbone at every evaluation point (RUN_DIR/snapshots/)
    knn_k: int = 50
    knn_protocol: str = "scale"  # scale (Euclidean, uniform) | cosine (weighted)
    knn_temperature: float = 0.07
    memory_samples: int = 1000
    test_samples: int = 5000
    # labelled train-split images outside the kNN memory, scored like the test subset
    # (eval/val_knn_top1); what `streamssl tune` selects on, so test images are never selected on.
    # 0: off
    val_samples: int = 1000
    batch_size: int = 512
    # BatchNorm statistics for evaluation: "running" (the model's own, as SCALE's protocol) or
    # "recalibrate" (recomputed on the unlabelled kNN-memory images before each evaluation, so
    # the untrained network's init statistics and the online learner's augmented-crop statistics
    # do not decide the comparison)
    bn: str = "running"
    # linear probe on the same frozen features as kNN, trained on the labelled memory split:
    # "end" (the last evaluation only), "points" (every evaluation) or "off" (YAML reads a bare
    # off/false as False, which means the same; true means "end")
    linear: str | bool = "end"
    linear_epochs: int = 100
    linear_lr: float = 0.1
    linear_batch_size: int = 256
    linear_weight_decay: float = 0.0


@dataclass(frozen=True)
class ScalingConfig:
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float | None = None


@dataclass(frozen=True)
class DedupConfig:
    every: int = 0  # stream batches between global dedup rounds across workers; 0: off
    threshold: float = 0.95  # remove while the most similar seen pair's cosine is at least this
    max_fraction: float = 0.1  # at most this share of all buffered entries per round


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 0  # stream batches between checkpoints (Ray Train runs); 0: off
    keep: int = 2  # complete checkpoints kept
    max_failures: int = 0  # worker failures Ray Train recovers from by restarting at the last checkpoint


@dataclass(frozen=True)
class TrackingConfig:
    """Mirrors of the metrics in MLflow / Weights & Biases (streamssl.tracking); Parquet stays the source."""

    mlflow_uri: str | None = None  # any MLflow tracking URI, e.g. sqlite:///mlflow.db
    mlflow_experiment: str = "streamssl"
    wandb: str | None = None  # offline | online
    wandb_project: str = "streamssl"
    run_name: str | None = None  # default: the run's name


DEFAULT_METHOD = "imai"


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    seed: int = 0
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: dict = field(default_factory=lambda: {"name": DEFAULT_METHOD})  # name + the method's Params fields
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)  # noqa: A003 - mirrors the YAML section
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def method_name(self) -> str:
        return self.method["name"]


SECTIONS = typing.get_type_hints(RunConfig)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; dict-typed leaves (dataset.options) stay whole below depth 2."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and not prefix:  # sections flatten; dict-valued keys stay whole
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["learner.k=3", "eval.points=[0,1]"] -> {"learner.k": 3, "eval.points": [0, 1]} (YAML values)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{item}: an override must be key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as err:
            raise ConfigError(f"{key.strip()}: cannot parse the override's value {raw!r} as YAML") from err
    return out


def load_yaml(path: str | Path, what: str = "pipeline") -> dict:
    """A YAML mapping file as a dict; ConfigError naming the file for every way reading it can fail."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as err:
        bad = err.object[err.start:err.start + 1]
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start} is {bad!r}); save it as UTF-8") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({first_line(err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} must be a mapping of keys (YAML), got {type(data).__name__}")
    return data


def load_flat(path: str | Path, _chain: tuple = ()) -> dict[str, Any]:
    """A pipeline file as dotted keys; `extends: other.yaml` (relative to the file) is merged under it."""
    path = Path(path).resolve()
    if path in _chain:
        raise ConfigError(f"{path}: circular 'extends'")
    data = load_yaml(path)
    parent = data.pop("extends", None)
    if parent is not None and not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: give one pipeline file name, got {parent!r}")
    flat = load_flat(path.parent / parent, _chain + (path,)) if parent else {}
    flat.update(flatten(data))
    return flat


def build(flat: dict[str, Any]) -> RunConfig:
    """A RunConfig from dotted keys, each type-checked against the schema (ConfigError names the key).

    The `method` section and `buffer.params` stay plain dicts here: their keys depend on the
    chosen method and policy, and `streamssl.resolve` checks them.
    """
    sections: dict[str, dict] = {}
    top: dict[str, Any] = {}
    for key, value in flat.items():
        head, _, rest = key.partition(".")
        if head not in SECTIONS:
            raise ConfigError(f"{key}: unknown key (sections: {', '.join(SECTIONS)})")
        if "." in rest:  # e.g. dataset.options.classes=8 on the command line
            field_name, _, sub = rest.partition(".")
            sections.setdefault(head, {}).setdefault(field_name, {})[sub] = value
        elif rest:
            sections.setdefault(head, {})[rest] = value
        elif isinstance(value, dict):
            sections.setdefault(head, {}).update(value)
        else:
            top[head] = value
    for key, value in top.items():
        if dataclasses.is_dataclass(SECTIONS[key]) or key == "method":
            raise ConfigError(f"{key}: must be a mapping of keys, got {value!r}")
        top[key] = check_type(key, value, typing.get_type_hints(RunConfig)[key])
    built = {name: _section(name, values) for name, values in sections.items()}
    return RunConfig(**top, **built)


def _section(name: str, values: dict) -> Any:
    if name == "method":
        return {"name": DEFAULT_METHOD, **values}
    cls = SECTIONS[name]
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(hints)})")
        values[key] = check_type(f"{name}.{key}", value, hints[key])
    return cls(**values)


_SCALARS = (bool, int, float, str)


def check_type(key: str, value: Any, hint: Any) -> Any:
    """Return value coerced to hint (int -> float is allowed), else raise ConfigError naming key."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    for option in options:
        ok, coerced = _matches(value, option)
        if ok:
            return coerced
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{key}: expected {names}, got {value!r}")


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _matches(value: Any, option: Any) -> tuple[bool, Any]:
    if option is type(None):
        return value is None, None
    origin = typing.get_origin(option) or option
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return True, float(value)
    if origin is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return True, float(value)
        except ValueError:
            return False, None
    if origin is int and isinstance(value, bool):
        return False, None
    if origin in _SCALARS + (list, dict, tuple) and isinstance(value, origin):
        return True, value
    if origin is tuple and isinstance(value, list):
        return True, tuple(value)
    return False, None


def dump(config: RunConfig, path: str | Path) -> None:
    from streamssl.fsio import write_text

    write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
