import pytest
import torch

from streamssl import config as cfg
from streamssl.methods import METHODS


def tiny_config(method: str):
    return cfg.load("pipelines/smoke.yaml", [f"method.name={method}"])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_step_gives_finite_loss_grads_and_normalized_features(name):
    config = tiny_config(name)
    method = METHODS[name](config.method_params(), config.model)
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    out = method.step(images, torch.Generator().manual_seed(0))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert out.features.shape == (6, method.feature_dim) and not out.features.requires_grad
    assert torch.allclose(out.features.norm(dim=1), torch.ones(6), atol=1e-5)
    assert method.embed(torch.randn(3, 3, 16, 16)).shape == (3, method.feat_dim)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_params_defaults_validate_and_presets_are_known_keys(name):
    METHODS[name].Params().validate()
    c = tiny_config(name)
    flat = cfg.flatten(c.to_dict())
    assert set(METHODS[name].presets) <= set(flat)
