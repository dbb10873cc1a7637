"""Every registered method honours the contract of methods/base.py: a new METHODS line is tested here."""

import dataclasses

import pytest
import torch

from streamssl import config as cfg
from streamssl import resolve
from streamssl.errors import ConfigError
from streamssl.methods import METHODS, method_params
from streamssl.resolve import build_method
from streamssl.train.learner import Learner
from streamssl.validation import STREAM_KINDS

SMOKE = "pipelines/smoke.yaml"


pytestmark = pytest.mark.single_thread


def tiny_config(method: str, **extra):
    # a run fills method.classes from the dataset (resolve.with_dataset_classes); smoke has 4 classes
    classes = {"method.classes": 4} if "classes" in METHODS[method].Params.__dataclass_fields__ else {}
    return resolve.load(SMOKE, {"method.name": method, **classes, **extra})


def _labels_kwarg(method, b):
    return {"labels": torch.arange(b) % 4} if method.needs_labels else {}


def _images(b=6, seed=0):
    return torch.randint(0, 256, (b, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_step_gives_finite_loss_grads_and_normalized_features(name):
    config = tiny_config(name)
    method = build_method(config)
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    out = method.step(images, torch.Generator().manual_seed(0), **_labels_kwarg(method, 6))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert out.features.shape == (6, method.proj_dim) and not out.features.requires_grad
    assert torch.allclose(out.features.norm(dim=1), torch.ones(6), atol=1e-5)
    if method.provides_sample_loss:
        assert out.sample_loss.shape == (6,) and torch.isfinite(out.sample_loss).all()
        assert not out.sample_loss.requires_grad
    assert method.embed(torch.randn(3, 3, 16, 16)).shape == (3, method.backbone_dim)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_params_defaults_validate_and_presets_are_known_keys(name):
    METHODS[name].Params().validate()
    c = tiny_config(name)
    flat = cfg.flatten(c.to_dict())
    assert set(METHODS[name].presets) <= set(flat)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_hook_runs_with_its_default_or_the_methods_own(name):
    cls, method, gen = METHODS[name], build_method(tiny_config(name)), torch.Generator().manual_seed(0)
    images = _images()
    assert method.begin_batch(images, gen) is None
    views = method.two_views(images, gen)
    assert views.shape == (2, 6, 3, 16, 16) and views.dtype == torch.float32
    with torch.no_grad():
        assert method.project(method.backbone(views[0])).shape == (6, method.proj_dim)
    embeddings = method.memory_embeddings(images)
    assert embeddings.shape == (6, method.backbone_dim) and embeddings.dtype == torch.float32
    assert method.training  # memory_embeddings leaves the module's mode as it found it
    assert method.after_step(1, 10) is None
    assert isinstance(cls.operating_warnings(cls.Params()), list)
    assert isinstance(cls.needs_stream_rows, bool)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_stream_presets_name_stream_kinds_and_known_keys(name):
    flat = cfg.flatten(tiny_config(name).to_dict())
    for kind, keys in METHODS[name].stream_presets.items():
        assert kind in STREAM_KINDS
        assert set(keys) <= set(flat) | {f"method.{f.name}" for f in dataclasses.fields(METHODS[name].Params)}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_params_field_is_a_pipeline_key(name):
    defaults = METHODS[name].Params()
    for field in dataclasses.fields(defaults):
        value = getattr(defaults, field.name)
        config = resolve.load(SMOKE, {"method.name": name, f"method.{field.name}": value})
        assert getattr(method_params(config.method), field.name) == value
    with pytest.raises(ConfigError, match=rf"^method\.bogus: not a parameter of method '{name}'"):
        resolve.load(SMOKE, {"method.name": name, "method.bogus": 1})


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_learner_trains_every_method_over_a_few_stream_batches(name):
    config = tiny_config(name, **({"method.crops": 2} if "crops" in METHODS[name].Params.__dataclass_fields__ else {}))
    learner = Learner(config, torch.device("cpu"), total_updates=4)
    results = []
    for i in range(3):
        results += learner.observe(_images(16, seed=i), [f"k{i}_{j}" for j in range(16)], torch.full((16,), i))
    assert results and all(torch.isfinite(torch.tensor(r.loss)) for r in results)
    assert learner.batches == 3 and len(learner.buffer) == config.buffer.size
