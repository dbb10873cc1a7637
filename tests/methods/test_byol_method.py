import math

import pytest
import torch

from streamssl import resolve
from streamssl.errors import ConfigError
from streamssl.methods.byol import BYOLParams, ema_update, target_tau
from streamssl.optim import build_optimizer
from streamssl.resolve import build_method


@pytest.fixture
def byol():
    config = resolve.load("pipelines/smoke.yaml", ["method.name=byol"])
    return build_method(config)


def _images(b=6):
    return torch.randint(0, 256, (b, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_tau_schedule_endpoints_and_midpoint():
    assert target_tau(0.996, 0, 100) == pytest.approx(0.996, abs=1e-15)
    assert target_tau(0.996, 50, 100) == pytest.approx(0.998, abs=1e-15)
    assert target_tau(0.996, 100, 100) == 1.0
    assert target_tau(0.996, 250, 100) == 1.0  # past the end it stays at 1
    k = 17
    assert target_tau(0.99, k, 40) == pytest.approx(1 - 0.01 * (math.cos(math.pi * k / 40) + 1) / 2, abs=1e-15)


def test_ema_update_rule_is_exact():
    g = torch.Generator().manual_seed(0)
    target, online = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    for m in (target, online):
        for p in m.parameters():
            p.data = torch.randn(p.shape, generator=g, dtype=torch.float64)
    before = [p.clone() for p in target.parameters()]
    ema_update(target, online, 0.75)
    for new, old, theta in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * theta, rtol=1e-15, atol=1e-15)


def test_target_starts_as_copy_and_is_out_of_the_optimizer(byol):
    for t, o in zip(byol.target.parameters(), byol.online.parameters()):
        assert torch.equal(t, o) and not t.requires_grad
    optimizer = build_optimizer(byol, 0.1, 0.9, 0.0, lars=False, eta=0.005)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized.isdisjoint(id(p) for p in byol.target.parameters())
    assert {id(p) for p in byol.predictor.parameters()} <= optimized


def test_one_update_moves_target_by_the_ema_of_the_online_step(byol):
    optimizer = build_optimizer(byol, 0.5, 0.0, 0.0, lars=False, eta=0.005)
    target_before = [p.detach().clone() for p in byol.target.parameters()]
    out = byol.step(_images(), torch.Generator().manual_seed(0))
    out.loss.backward()
    assert all(p.grad is None for p in byol.target.parameters())
    optimizer.step()
    byol.after_step(1, 10)  # the first update uses tau_base
    tau = byol.params.tau_base
    for t, old, o in zip(byol.target.parameters(), target_before, byol.online.parameters()):
        torch.testing.assert_close(t, tau * old + (1 - tau) * o.detach())
    moved = sum((t - old).abs().sum() for t, old in zip(byol.target.parameters(), target_before))
    assert moved > 0


def test_target_follows_device_and_memory_format(byol):
    byol = byol.to(memory_format=torch.channels_last)
    conv = [(t, o) for t, o in zip(byol.target.parameters(), byol.online.parameters()) if t.ndim == 4]
    assert conv and all(t.is_contiguous(memory_format=torch.channels_last) for t, _ in conv)
    byol.after_step(1, 10)  # the EMA keeps working on channels_last parameters
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t, _ in conv)


def test_views_are_seeded(byol):
    a = byol.step(_images(), torch.Generator().manual_seed(3)).loss.item()
    b = byol.step(_images(), torch.Generator().manual_seed(3)).loss.item()
    c = byol.step(_images(), torch.Generator().manual_seed(4)).loss.item()
    assert a == b and a != c


def test_rejects_tau_out_of_range():
    with pytest.raises(ConfigError, match="tau_base"):
        BYOLParams(tau_base=1.5).validate()
