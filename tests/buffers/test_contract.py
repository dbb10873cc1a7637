"""Every registered policy: valid removals, len <= capacity, deterministic, state round trip, declared
defaults, `buffer.params` keys: a new POLICIES line is tested here."""

import dataclasses
import io

import pytest
import torch

from streamssl import resolve
from streamssl.buffers import POLICIES, ReplayBuffer, resize
from streamssl.errors import ConfigError
from streamssl.resolve import policy_params
from streamssl.train.learner import Learner

SMOKE = "pipelines/smoke.yaml"


def _step(buf, step, b, gen):
    ids = torch.arange(step * b, (step + 1) * b)
    slots = buf.insert(torch.zeros(b, 3, 2, 2, dtype=torch.uint8), [f"k{i}" for i in ids.tolist()], ids % 7)
    replay = buf.sample(b, gen, exclude=slots)
    touched = torch.cat([slots, replay])
    buf.update_features(touched, torch.randn(touched.numel(), 6, generator=gen))


def _run(name, steps, seed=0, capacity=20, b=6):
    policy = POLICIES[name](POLICIES[name].Params())
    buf = ReplayBuffer(capacity, (3, 2, 2), 6, max_batch=b)
    gen = torch.Generator().manual_seed(seed)
    log = []
    for step in range(steps):
        _step(buf, step, b, gen)
        before = len(buf)
        removed = resize(buf, policy, gen)
        assert removed.numel() == max(before - capacity, 0)
        assert removed.unique().numel() == removed.numel()
        assert ((removed >= 0) & (removed < before)).all()
        assert len(buf) <= capacity
        log.append(list(buf.keys))
    return buf, policy, gen, log


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_resize_contract_and_determinism(name):
    _, _, _, log = _run(name, steps=8)
    _, _, _, again = _run(name, steps=8)
    assert log == again
    assert all(len(keys) == len(set(keys)) for keys in log)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_state_round_trip_gives_the_same_future(name):
    buf, policy, gen, _ = _run(name, steps=5)
    blob = io.BytesIO()
    torch.save({"buffer": buf.state_dict(), "policy": policy.state_dict(), "gen": gen.get_state()}, blob)
    blob.seek(0)
    state = torch.load(blob, weights_only=True)
    twin_buf = ReplayBuffer(20, (3, 2, 2), 6, max_batch=6)
    twin_buf.load_state_dict(state["buffer"])
    twin = POLICIES[name](POLICIES[name].Params())
    twin.load_state_dict(state["policy"])
    twin_gen = torch.Generator()
    twin_gen.set_state(state["gen"])
    for step in range(5, 9):
        for b, p, g in ((buf, policy, gen), (twin_buf, twin, twin_gen)):
            _step(b, step, 6, g)
            resize(b, p, g)
        assert buf.keys == twin_buf.keys


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_params_build_with_defaults(name):
    policy = POLICIES[name](POLICIES[name].Params())
    assert isinstance(policy.params, POLICIES[name].Params)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_declared_defaults(name):
    cls = POLICIES[name]
    assert isinstance(cls.embeds, bool) and isinstance(cls.needs_sample_loss, bool)
    cls.Params().validate()
    policy = cls()
    assert isinstance(policy.state_dict(), dict)
    policy.load_state_dict(policy.state_dict())


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_params_field_is_a_buffer_params_key_and_reaches_the_learner(name):
    defaults = POLICIES[name].Params()
    params = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    method = "imai" if POLICIES[name].needs_sample_loss else "simclr"  # one that gives per-sample losses
    config = resolve.load(SMOKE, {"method.name": method, "buffer.policy": name, "buffer.params": params})
    assert policy_params(config) == defaults
    learner = Learner(config, torch.device("cpu"), total_updates=3)
    assert isinstance(learner.policy, POLICIES[name]) and learner.policy.params == defaults
    for i in range(3):
        images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(i))
        learner.observe(images, [f"k{i}_{j}" for j in range(16)], torch.full((16,), i))
    assert len(learner.buffer) == config.buffer.size
    with pytest.raises(ConfigError, match=rf"^buffer\.params\.bogus: not a parameter of policy '{name}'"):
        resolve.load(SMOKE, {"buffer.policy": name, "buffer.params.bogus": 1})
