"""Backbones out of a run and into one: `backbone.pt` files, snapshots, `streamssl export`, `model.init_from`.

A backbone file is a plain state dict of the backbone alone (no `backbone.` prefix, no heads, no
optimizer), saved with `torch.save` and read with `torch.load(weights_only=True)`. The ResNets are
torchvision's own modules with `fc = Identity()` (models/backbones.py), so their state dicts are
torchvision's key for key, minus `fc`:

    net = torchvision.models.resnet18()          # or resnet50
    net.fc = torch.nn.Identity()
    net.load_state_dict(torch.load("backbone.pt", weights_only=True))   # strict

`resnet18_cifar` adds `net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)` and
`net.maxpool = nn.Identity()` before loading. timm's ResNet was written to load torchvision
weights and names every parameter and buffer the same way (stem `conv1`/`bn1`, stages `layer1`-`layer4`,
blocks `conv1`-`conv3`/`bn1`-`bn3`, shortcut `downsample.0`/`.1`, head `fc`), so the timm format is
the same mapping, checked against that layout (`timm.create_model(name, num_classes=0)`).

A run writes RUN_DIR/backbone.pt at its end and, with snapshots on, RUN_DIR/snapshots/
backbone-<samples_seen, 12 digits>.pt at every evaluation point (`write_backbone`). Runs from before
backbone files existed are read from model.pt (the method's state dict, backbone under `backbone.`).
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from streamssl import fsio
from streamssl.errors import ConfigError

BACKBONE_FILE = "backbone.pt"
SNAPSHOT_DIR = "snapshots"
MODEL_FILE = "model.pt"
FORMATS = ("torchvision", "timm", "plain")
TORCHVISION_NAMES = ("resnet18", "resnet50", "resnet18_cifar")  # backbones with a torchvision/timm twin
_PREFIX = "backbone."
_SNAPSHOT = re.compile(r"backbone-(\d{12})\.pt")
# timm's ResNet parameter and buffer names (timm/models/resnet.py: ResNet, BasicBlock, Bottleneck)
_TIMM_RESNET = re.compile(r"(conv1\.weight|bn1\.(weight|bias|running_mean|running_var|num_batches_tracked)"
                          r"|layer[1-4]\.\d+\.(conv[1-3]\.weight|bn[1-3]\.(weight|bias|running_mean|running_var"
                          r"|num_batches_tracked)|downsample\.0\.weight|downsample\.1\.(weight|bias|running_mean"
                          r"|running_var|num_batches_tracked))|fc\.(weight|bias))")


def backbone_state(method: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's state dict, detached on the CPU in the standard memory layout (a run may train
    channels-last; the file should not carry that)."""
    return {name: value.detach().cpu().contiguous().clone() for name, value in method.backbone.state_dict().items()}


def snapshot_path(run_dir: str | Path, samples_seen: int) -> str:
    return fsio.join(run_dir, SNAPSHOT_DIR, f"backbone-{int(samples_seen):012d}.pt")


def write_backbone(run_dir: str | Path, method: nn.Module, at: int | None = None) -> Path | str:
    """Save the method's backbone as RUN_DIR/backbone.pt, or with `at` (samples seen) as that
    evaluation point's snapshot; atomically, so a reader never sees half a file.

    Returns:
        The path written (a Path; a URI as str).
    """
    path = fsio.join(run_dir, BACKBONE_FILE) if at is None else snapshot_path(run_dir, at)
    with fsio.atomic_path(path) as tmp:
        torch.save(backbone_state(method), tmp)
    return fsio.as_path(path)


def snapshots(run_dir: str | Path) -> list[tuple[int, str]]:
    """(samples_seen, path) of a run's backbone snapshots, in stream order."""
    folder = fsio.join(run_dir, SNAPSHOT_DIR)
    names = fsio.listdir(folder) if fsio.is_dir(folder) else []
    found = [(int(m.group(1)), fsio.join(folder, n)) for n in names if (m := _SNAPSHOT.fullmatch(n))]
    return sorted(found)


def read_state(path: str | Path, arg: str = "FILE") -> dict[str, torch.Tensor]:
    """A backbone file's state dict; a model.pt gives its backbone part."""
    try:
        state = fsio.torch_load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise ConfigError(f"{arg}: {path} is not a readable torch file ({str(err).splitlines()[0]})") from None
    if isinstance(state, dict) and isinstance(state.get("method"), dict):  # a run's model.pt
        state = {k[len(_PREFIX):]: v for k, v in state["method"].items() if k.startswith(_PREFIX)}
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{arg}: {path} holds no state dict of tensors")
    return state


def run_state(run_dir: str | Path, at: float | None = None, arg: str = "RUN_DIR") -> tuple[dict, dict]:
    """(backbone state dict, where it came from) of a run: its end, or with `at` the snapshot nearest
    to that fraction of the stream.

    Raises:
        ConfigError: not a finished run dir (`arg`), or `--at` without snapshots / out of [0, 1].
    """
    if at is not None:
        return _snapshot_state(run_dir, at)
    for name in (BACKBONE_FILE, MODEL_FILE):
        if fsio.is_file(fsio.join(run_dir, name)):
            return read_state(fsio.join(run_dir, name), arg), {"file": fsio.join(run_dir, name), "samples_seen": None}
    raise ConfigError(f"{arg}: {run_dir} has no {BACKBONE_FILE} or {MODEL_FILE} (not a finished run?)")


def _snapshot_state(run_dir: str | Path, at: float) -> tuple[dict, dict]:
    if not 0.0 <= at <= 1.0:
        raise ConfigError(f"--at: a fraction of the stream in [0, 1], got {at}")
    found = snapshots(run_dir)
    if not found:
        raise ConfigError(f"--at: {run_dir} has no backbone snapshots (run it with eval.snapshots=true)")
    total = _stream_samples(run_dir)
    target = round(at * total)
    seen, path = min(found, key=lambda item: (abs(item[0] - target), item[0]))
    return read_state(path, "--at"), {"file": str(path), "samples_seen": seen, "fraction": seen / max(total, 1)}


def _stream_samples(run_dir: str | Path) -> int:
    try:
        return int(json.loads(fsio.read_text(fsio.join(run_dir, "run.json")))["stream_samples"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"RUN_DIR: {run_dir}/run.json gives no stream_samples (not a run directory?)") from None


def run_backbone_name(run_dir: str | Path, arg: str = "RUN_DIR") -> str:
    """model.backbone of a run (its config.yaml)."""
    import yaml

    path = fsio.join(run_dir, "config.yaml")
    try:
        return str(yaml.safe_load(fsio.read_text(path))["model"]["backbone"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        raise ConfigError(f"{arg}: {path} gives no model.backbone (not a run directory?)") from None


def in_format(state: dict, backbone: str, fmt: str | None) -> tuple[dict, str]:
    """(state dict in `fmt`, the format used); None picks torchvision for the ResNets, plain otherwise.

    Raises:
        ConfigError: an unknown format, or torchvision/timm asked of a backbone without a twin there.
    """
    fmt = fmt or ("torchvision" if backbone in TORCHVISION_NAMES else "plain")
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt != "plain" and backbone not in TORCHVISION_NAMES:
        raise ConfigError(f"--format: {backbone} is streamssl's own network with no {fmt} twin; use --format plain "
                          "(load it into streamssl.models.build_backbone)")
    return (timm_state(state) if fmt == "timm" else dict(state)), fmt


def timm_state(state: dict) -> dict:
    """The state dict under timm's ResNet names: the same names (see the module docstring), checked
    key by key so a backbone that is not a plain ResNet is refused rather than half-mapped."""
    stray = [name for name in state if not _TIMM_RESNET.fullmatch(name)]
    if stray:
        raise ConfigError(f"--format: timm's ResNet has no parameter {stray[0]!r}")
    return dict(state)


def export_backbone(run_dir: str | Path, out: str | Path, *, at: float | None = None, fmt: str | None = None) -> dict:
    """`streamssl export`: write a run's backbone (its end, or the snapshot nearest `at`) to `out`.

    Returns:
        dict(out, backbone, format, source file, samples_seen (None: the run's end), keys, load: the
        Python lines that load the file).
    """
    if not fsio.is_dir(run_dir):
        raise ConfigError(f"RUN_DIR: {run_dir} is not a folder")
    backbone = run_backbone_name(run_dir)
    state, where = run_state(run_dir, at)
    state, fmt = in_format(state, backbone, fmt)
    out = fsio.normpath(out)
    if fsio.is_dir(out):
        raise ConfigError(f"--out: {out} is a folder; name the file to write")
    with fsio.atomic_path(out) as tmp:
        torch.save(state, tmp)
    return {"out": str(out), "backbone": backbone, "format": fmt, "source": where["file"],
            "samples_seen": where["samples_seen"], "keys": len(state), "load": load_lines(backbone, fmt, out)}


def load_lines(backbone: str, fmt: str, path: str | Path) -> list[str]:
    """The Python lines that build the model an exported file loads into (README, `export`'s output)."""
    if fmt == "plain":
        return ["from streamssl.models import build_backbone",
                f"net, dim = build_backbone({backbone!r})",
                f"net.load_state_dict(torch.load({str(path)!r}, weights_only=True))"]
    arch = "resnet18" if backbone == "resnet18_cifar" else backbone
    build = (f"net = timm.create_model({arch!r}, num_classes=0)" if fmt == "timm"
             else f"net = torchvision.models.{arch}(); net.fc = torch.nn.Identity()")
    lines = [build]
    if backbone == "resnet18_cifar":
        lines.append("net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False); net.maxpool = torch.nn.Identity()")
    return lines + [f"net.load_state_dict(torch.load({str(path)!r}, weights_only=True))"]


def torchvision_model(backbone: str) -> nn.Module:
    """The torchvision model a `backbone` export loads into with strict=True (`load_lines`'s model)."""
    from torchvision import models as tvm

    if backbone not in TORCHVISION_NAMES:
        raise ConfigError(f"--backbone: {backbone} has no torchvision twin")
    net = tvm.resnet50() if backbone == "resnet50" else tvm.resnet18()
    net.fc = nn.Identity()
    if backbone == "resnet18_cifar":
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return net


def resolve_backbone_file(path: str | Path, arg: str = "model.init_from") -> str:
    """A backbone file, or a run dir's backbone.pt (else its model.pt)."""
    path = fsio.normpath(path)
    if fsio.is_dir(path):
        for name in (BACKBONE_FILE, MODEL_FILE):
            if fsio.is_file(fsio.join(path, name)):
                return fsio.join(path, name)
        raise ConfigError(f"{arg}: {path} holds no {BACKBONE_FILE} or {MODEL_FILE} (not a finished run?)")
    if not fsio.is_file(path):
        raise ConfigError(f"{arg}: {path} is neither a backbone file nor a run directory")
    return path


def load_backbone_into(backbone: nn.Module, path: str | Path, arg: str = "model.init_from") -> Path | str:
    """Load a backbone file (or a run dir's backbone) into `backbone`, strictly: every parameter and
    buffer must match in name and shape, so a backbone of another architecture is refused.

    Returns:
        The file loaded (a Path; a URI as str).

    Raises:
        ConfigError: no such file or run, not a state dict, or names / shapes that do not match (`arg: ...`).
    """
    path = resolve_backbone_file(path, arg)
    load_state_strict(backbone, read_state(path, arg), path, arg)
    return fsio.as_path(path)


def load_state_strict(backbone: nn.Module, state: dict, where, arg: str) -> None:
    """`backbone.load_state_dict(state, strict=True)` with a one-line error naming `arg` and the first
    key or shape that does not fit."""
    own = backbone.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        detail = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise ConfigError(f"{arg}: {where} does not fit this backbone ({len(missing)} missing, {len(extra)} "
                          f"unexpected keys; {detail}): a different architecture?")
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        raise ConfigError(f"{arg}: {where}: {wrong[0]!r} has shape {tuple(state[wrong[0]].shape)}, this backbone "
                          f"{tuple(own[wrong[0]].shape)}: a different architecture?")
    backbone.load_state_dict(state, strict=True)
