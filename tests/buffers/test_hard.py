"""buffer.policy hard: the EMA of per-sample losses and the removals, against a naive reference."""

import math

import pytest
import torch

from streamssl import resolve
from streamssl.buffers import Hard, ReplayBuffer, resize
from streamssl.errors import ConfigError
from streamssl.train.learner import Learner

SMOKE = "pipelines/smoke.yaml"


def _buffer(n, capacity, b):
    buf = ReplayBuffer(capacity, (3, 2, 2), 4, max_batch=b)
    for start in range(0, n, b):
        ids = list(range(start, min(start + b, n)))
        buf.insert(torch.zeros(len(ids), 3, 2, 2, dtype=torch.uint8), [f"k{i}" for i in ids], torch.zeros(len(ids)))
    return buf


def _naive_ema(history, alpha):
    """{uid: running loss} from (uid, loss) pairs in order, written from the definition."""
    ema = {}
    for uid, loss in history:
        ema[uid] = loss if uid not in ema else alpha * ema[uid] + (1 - alpha) * loss
    return ema


def _naive_removals(buf, ema, n_remove):
    """Lowest running loss first (unscored = +inf), then the oldest, then the lowest slot."""
    rows = [(ema.get(u, math.inf), -life, slot) for slot, (u, life) in
            enumerate(zip(buf.uids.tolist(), buf.lifespan.tolist()))]
    return [slot for *_, slot in sorted(rows)[:n_remove]]


def test_running_losses_and_removals_match_the_naive_reference():
    gen = torch.Generator().manual_seed(0)
    buf, policy, history = _buffer(26, capacity=20, b=6), Hard(Hard.Params(alpha=0.3)), []
    for _ in range(12):
        slots = torch.randperm(len(buf), generator=gen)[:5]
        losses = torch.rand(5, generator=gen) * torch.randint(1, 4, (5,), generator=gen)  # ties and spread
        policy.record_losses(buf, slots, losses)
        history += list(zip(buf.uids[slots].tolist(), losses.tolist()))
    ema = _naive_ema(history, 0.3)
    got = policy.running_losses(buf.uids)
    want = torch.tensor([ema.get(u, math.inf) for u in buf.uids.tolist()], dtype=torch.float64)
    assert torch.allclose(got, want, atol=1e-6)
    expected = _naive_removals(buf, ema, 6)
    assert policy.select(buf, 6, gen).tolist() == expected


def test_resize_keeps_the_hardest_entries():
    buf, policy = _buffer(12, capacity=8, b=12), Hard()
    losses = torch.tensor([5.0, 0.1, 3.0, 0.2, 4.0, 0.3, 2.0, 0.4, 6.0, 0.5, 1.0, 7.0])
    policy.record_losses(buf, torch.arange(12), losses)
    resize(buf, policy, torch.Generator())
    kept = sorted(int(k[1:]) for k in buf.keys)
    assert kept == [0, 2, 4, 6, 8, 9, 10, 11]  # the four lowest (0.1, 0.2, 0.3, 0.4) left
    assert set(policy.losses) == set(buf.uids.tolist())  # removed entries' losses are forgotten


def test_unscored_entries_are_kept_and_ties_go_oldest_first():
    buf, policy = _buffer(8, capacity=5, b=4), Hard()  # two inserts: uids 0-3 older than 4-7
    policy.record_losses(buf, torch.tensor([0, 1, 4, 5]), torch.ones(4))
    assert sorted(policy.select(buf, 3, torch.Generator()).tolist()) == [0, 1, 4]


def test_protected_entries_are_not_removed_and_keep_their_losses():
    buf = _buffer(8, capacity=4, b=4)
    buf.protect_new = 1
    policy = Hard()
    policy.record_losses(buf, torch.arange(8), torch.tensor([9.0, 8.0, 7.0, 6.0, 0.1, 0.2, 0.3, 0.4]))
    resize(buf, policy, torch.Generator())
    assert sorted(buf.uids.tolist()) == [4, 5, 6, 7] and set(policy.losses) == {4, 5, 6, 7}


def test_a_method_without_per_sample_losses_is_refused_naming_buffer_policy():
    with pytest.raises(ConfigError, match=r"^buffer\.policy: 'hard' ranks per-sample losses, which method 'empssl'"):
        resolve.load(SMOKE, {"method.name": "empssl", "buffer.policy": "hard"})


def test_the_learner_feeds_imai_losses_to_the_policy():
    config = resolve.load(SMOKE, {"method.name": "imai", "method.crops": 2, "buffer.policy": "hard"})
    learner = Learner(config, torch.device("cpu"), total_updates=3)
    for i in range(3):
        images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(i))
        learner.observe(images, [f"k{i}_{j}" for j in range(16)], torch.full((16,), i))
    scored = learner.policy.running_losses(learner.buffer.uids)
    assert len(learner.buffer) == 32 and torch.isfinite(scored).all() and (scored > 0).all()


def test_a_pipeline_with_other_methods_blocks_runs_hard_for_the_chosen_method():
    # fmnist-cpu carries per_method blocks for empssl, minred and scale, which cannot run hard
    config = resolve.load("pipelines/fmnist-cpu.yaml", {"buffer.policy": "hard"})
    assert config.method_name == "imai" and config.buffer.policy == "hard"
    with pytest.raises(ConfigError, match=r"^buffer\.policy: 'hard'"):
        resolve.load("pipelines/fmnist-cpu.yaml", {"buffer.policy": "hard", "method.name": "empssl"})
