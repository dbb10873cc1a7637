"""The new run keys without a run: validation (one line naming the key), the effective learning rate
and warmup in the Learner, `model.init_from` in the method (BYOL's target too), grad checkpointing."""

import pytest
import torch

from streamssl import resolve
from streamssl.errors import ConfigError
from streamssl.export import write_backbone
from streamssl.models import build_backbone
from streamssl.models.backbones import enable_grad_checkpointing
from streamssl.train.learner import Learner, effective_lr

SMOKE = "pipelines/smoke.yaml"


@pytest.mark.parametrize("override, key", [
    ("learner.lr_scaling=cubic", "learner.lr_scaling"),
    ("learner.lr_reference_batch=0", "learner.lr_reference_batch"),
    ("learner.warmup_updates=-1", "learner.warmup_updates"),
    ("eval.points=[0, later]", "eval.points"),
    ("eval.points=sometimes", "eval.points"),
    ("tracking.wandb=maybe", "tracking.wandb"),
    ("tracking.mlflow_uri=' '", "tracking.mlflow_uri"),
    ("tracking.colour=red", "tracking.colour"),
])
def test_bad_keys_are_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        resolve.load(SMOKE, [override])
    assert str(err.value).startswith(key) and "\n" not in str(err.value)


def test_segments_alone_or_as_a_list_item_is_accepted():
    assert resolve.load(SMOKE, ["eval.points=segments"]).eval.points == "segments"
    assert resolve.load(SMOKE, ["eval.points=[0.5, segments]"]).eval.points == [0.5, "segments"]


@pytest.mark.parametrize("scaling, workers, expected", [("none", 4, 0.03), ("linear", 4, 0.03 * 64 / 32),
                                                        ("sqrt", 4, 0.03 * 2 ** 0.5), ("linear", 1, 0.015)])
def test_effective_lr_follows_the_global_batch(scaling, workers, expected):
    config = resolve.load(SMOKE, [f"learner.lr_scaling={scaling}", "learner.lr_reference_batch=32",
                                  f"scaling.num_workers={workers}"])
    assert effective_lr(config) == pytest.approx(expected)


@pytest.mark.single_thread
def test_learner_warms_up_to_the_effective_lr_and_counts_flops():
    config = resolve.load(SMOKE, ["learner.lr_scaling=linear", "learner.lr_reference_batch=8",
                                  "learner.warmup_updates=3", "learner.lr_schedule=constant", "learner.k=5",
                                  "method.name=simclr"])
    learner = Learner(config, torch.device("cpu"), total_updates=10)
    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    results = learner.observe(images, [str(i) for i in range(16)], torch.zeros(16, dtype=torch.long))
    assert [r.lr for r in results] == pytest.approx([0.02, 0.04, 0.06, 0.06, 0.06])  # 0.03 x 16/8 = 0.06
    assert learner.flops_per_update > 10 ** 6


@pytest.mark.single_thread
def test_init_from_loads_the_backbone_before_byols_target_copies_it(tmp_path):
    config = resolve.load(SMOKE, ["method.name=byol", "seed=3"])
    source = Learner(config, torch.device("cpu"), total_updates=1).method
    write_backbone(tmp_path, source)
    started = resolve.load(SMOKE, ["method.name=byol", f"model.init_from={tmp_path}"])
    method = Learner(started, torch.device("cpu"), total_updates=1).method
    for name, value in source.backbone.state_dict().items():
        assert torch.equal(method.backbone.state_dict()[name], value)
        assert torch.equal(method.target.backbone.state_dict()[name], value)


@pytest.mark.single_thread
@pytest.mark.parametrize("name", ["cnn4", "resnet18_cifar"])
def test_grad_checkpointing_keeps_names_outputs_and_gradients(name):
    torch.manual_seed(0)
    plain, _ = build_backbone(name)
    torch.manual_seed(0)
    checked, _ = build_backbone(name)
    enable_grad_checkpointing(checked)
    assert list(plain.state_dict()) == list(checked.state_dict())  # exported files stay loadable
    x = torch.randn(2, 3, 8, 8)
    plain(x).square().sum().backward()
    checked(x).square().sum().backward()
    for a, b in zip(plain.parameters(), checked.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_custom_streams_take_several_order_columns():
    config = resolve.load(SMOKE, ["stream.kind=custom", "stream.order_by=video,-frame"])
    assert config.stream.order_by == "video,-frame"
    with pytest.raises(ConfigError, match=r"^stream\.order_by: .*'video' appears twice"):
        resolve.load(SMOKE, ["stream.kind=custom", "stream.order_by=video,-video"])
