"""Every registered policy: valid removals, len <= capacity, deterministic, state round trip."""

import io

import pytest
import torch

from streamssl.buffers import POLICIES, ReplayBuffer


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
        removed = buf.resize(policy, gen)
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
            b.resize(p, g)
        assert buf.keys == twin_buf.keys


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_params_build_with_defaults(name):
    policy = POLICIES[name](POLICIES[name].Params())
    assert isinstance(policy.params, POLICIES[name].Params)
