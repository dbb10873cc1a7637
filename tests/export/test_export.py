"""Backbone files: written by a run (end and snapshots), exported for torchvision / timm and loaded
by torchvision itself with strict=True, and loaded back into a backbone (`model.init_from`)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torchvision import models as tvm

from streamssl.cli import main
from streamssl.errors import ConfigError
from streamssl.export import (
    export_backbone,
    load_backbone_into,
    snapshots,
    timm_state,
    write_backbone,
)
from streamssl.models import build_backbone


class Holder(nn.Module):
    """Stands in for a method: the backbone under `backbone`, plus a head that must not be exported."""

    def __init__(self, name: str, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.backbone, dim = build_backbone(name)
        self.head = nn.Linear(dim, 4)
        for module in self.backbone.modules():  # non-default BatchNorm statistics must travel too
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)


def make_run(tmp_path, name: str, stream_samples: int = 100):
    run_dir = tmp_path / f"run-{name}"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"model": {"backbone": name, "image_size": 32}}))
    (run_dir / "run.json").write_text(json.dumps({"stream_samples": stream_samples}))
    return run_dir


def torchvision_twin(name: str) -> nn.Module:
    """The README's lines, written out with torchvision alone."""
    net = tvm.resnet50() if name == "resnet50" else tvm.resnet18()
    net.fc = nn.Identity()
    if name == "resnet18_cifar":
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return net


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet18_cifar"])
def test_resnet_exports_load_strictly_into_torchvision_and_compute_the_same_features(tmp_path, name, one_thread):
    holder = Holder(name).eval()
    run_dir = make_run(tmp_path, name)
    written = write_backbone(run_dir, holder)
    assert Path(written) == run_dir / "backbone.pt"
    done = export_backbone(run_dir, tmp_path / "out.pt")
    assert done["format"] == "torchvision" and done["samples_seen"] is None
    net = torchvision_twin(name)
    result = net.load_state_dict(torch.load(tmp_path / "out.pt", weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), holder.backbone(x), atol=1e-5)
    assert not any(k.startswith(("head", "backbone.")) for k in torch.load(written, weights_only=True))


def test_a_trained_learners_backbone_exports_and_torchvision_reproduces_its_embeddings(tmp_path, one_thread):
    from streamssl import resolve as cfg
    from streamssl.train.learner import Learner

    config = cfg.load("pipelines/smoke.yaml", ["model.backbone=resnet18_cifar", "method.crops=2", "learner.k=1"])
    learner = Learner(config, torch.device("cpu"), total_updates=2)
    rng = np.random.default_rng(0)
    for step in range(2):  # training moves weights and BatchNorm statistics away from their init
        images = torch.from_numpy(rng.integers(0, 256, (16, 3, 16, 16), dtype=np.uint8))
        learner.observe(images, [f"k{step}_{i}" for i in range(16)], torch.arange(16) % 4)
    assert learner.update > 0
    run_dir = make_run(tmp_path, "resnet18_cifar")
    write_backbone(run_dir, learner.method)
    assert main(["export", str(run_dir), "--out", str(tmp_path / "r18c.pt")]) == 0
    net = torchvision_twin("resnet18_cifar")
    net.load_state_dict(torch.load(tmp_path / "r18c.pt", weights_only=True), strict=True)
    x = torch.randn(3, 3, 16, 16)
    learner.method.eval()
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), learner.method.embed(x), atol=1e-5)


def test_runs_without_backbone_pt_export_the_backbone_part_of_model_pt(tmp_path):
    holder = Holder("resnet18_cifar")
    run_dir = make_run(tmp_path, "resnet18_cifar")
    torch.save({"method": holder.state_dict()}, run_dir / "model.pt")
    export_backbone(run_dir, tmp_path / "b.pt")
    state = torch.load(tmp_path / "b.pt", weights_only=True)
    assert set(state) == set(holder.backbone.state_dict())
    assert torch.equal(state["conv1.weight"], holder.backbone.conv1.weight)


def test_snapshots_are_picked_nearest_to_the_fraction(tmp_path):
    run_dir = make_run(tmp_path, "cnn4", stream_samples=100)
    for seed, at in enumerate((0, 50, 100)):
        write_backbone(run_dir, Holder("cnn4", seed=seed), at=at)
    assert [seen for seen, _ in snapshots(run_dir)] == [0, 50, 100]
    picks = {at: export_backbone(run_dir, tmp_path / f"{at}.pt", at=at)["samples_seen"] for at in (0.0, 0.4, 0.6, 0.9)}
    assert picks == {0.0: 0, 0.4: 50, 0.6: 50, 0.9: 100}
    mid = torch.load(tmp_path / "0.4.pt", weights_only=True)
    assert torch.equal(mid["features.0.weight"], Holder("cnn4", seed=1).backbone.features[0].weight)
    (tmp_path / "x").mkdir()
    bare = make_run(tmp_path / "x", "cnn4")
    with pytest.raises(ConfigError, match="^--at: .*eval.snapshots=true"):
        export_backbone(bare, tmp_path / "none.pt", at=0.5)


def test_cnn4_exports_as_a_plain_state_dict_and_refuses_torchvision(tmp_path, capsys):
    run_dir = make_run(tmp_path, "cnn4")
    write_backbone(run_dir, Holder("cnn4"))
    assert main(["export", str(run_dir), "--out", str(tmp_path / "c.pt")]) == 0
    out = capsys.readouterr().out
    assert "plain" in out and "streamssl's own network" in out
    net, _ = build_backbone("cnn4")
    net.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True), strict=True)
    assert main(["export", str(run_dir), "--out", str(tmp_path / "d.pt"), "--format", "torchvision"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--format" in err and "cnn4" in err
    assert not (tmp_path / "d.pt").exists()


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_timm_format_has_the_torchvision_layout_key_for_key(tmp_path, name):
    # timm's ResNet names parameters as torchvision does (timm/models/resnet.py); a timm model built
    # with num_classes=0 has no fc, like torchvision's with fc = Identity()
    state = build_backbone(name)[0].state_dict()
    expected = {k for k in getattr(tvm, name)().state_dict() if not k.startswith("fc.")}
    assert set(timm_state(state)) == expected
    with pytest.raises(ConfigError, match="^--format: timm's ResNet has no parameter 'features"):
        timm_state(build_backbone("cnn4")[0].state_dict())


def test_load_backbone_into_takes_a_file_or_a_run_dir_and_refuses_another_architecture(tmp_path):
    source = Holder("resnet18_cifar", seed=3)
    run_dir = make_run(tmp_path, "resnet18_cifar")
    path = write_backbone(run_dir, source)
    for where in (path, run_dir):
        target, _ = build_backbone("resnet18_cifar")
        assert load_backbone_into(target, where) == path
        assert torch.equal(target.layer4[1].bn2.running_var, source.backbone.layer4[1].bn2.running_var)
    with pytest.raises(ConfigError, match="^model.init_from: .*does not fit this backbone"):
        load_backbone_into(build_backbone("cnn4")[0], path)
    with pytest.raises(ConfigError, match="^model.init_from: .*has shape"):
        load_backbone_into(build_backbone("resnet18")[0], path)  # same keys, a 7x7 stem
    with pytest.raises(ConfigError, match="^model.init_from: .*neither a backbone file nor a run directory"):
        load_backbone_into(build_backbone("cnn4")[0], tmp_path / "missing.pt")


@pytest.mark.parametrize("argv, flag", [
    (["--at", "1.5"], "--at"),
    (["--format", "onnx"], "--format"),
])
def test_export_argument_errors_are_one_line_naming_the_argument(tmp_path, capsys, argv, flag):
    run_dir = make_run(tmp_path, "resnet18")
    write_backbone(run_dir, Holder("resnet18"))
    assert main(["export", str(run_dir), "--out", str(tmp_path / "o.pt"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err


def test_export_of_a_folder_that_is_no_run_names_run_dir(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "o.pt")]) == 2
    assert "RUN_DIR" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet18_cifar"])
def test_timm_exports_load_strictly_into_timm_itself(tmp_path, name, one_thread):
    timm = pytest.importorskip("timm", reason="timm is the optional `timm` extra (pip install timm)")
    holder = Holder(name).eval()
    run_dir = make_run(tmp_path, name)
    write_backbone(run_dir, holder)
    export_backbone(run_dir, tmp_path / "t.pt", fmt="timm")
    net = timm.create_model("resnet18" if name == "resnet18_cifar" else name, num_classes=0, pretrained=False)
    if name == "resnet18_cifar":
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.load_state_dict(torch.load(tmp_path / "t.pt", weights_only=True), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), holder.backbone(x), atol=1e-5)
