"""learner.replay_weighting density: weights and draw frequencies against a naive reference."""

import math

import pytest
import torch

from streamssl import resolve
from streamssl.buffers import ReplayBuffer, density_sample
from streamssl.buffers.density import EPS, replay_weights
from streamssl.errors import ConfigError
from streamssl.train.learner import Learner

SMOKE = "pipelines/smoke.yaml"


def _buffer(features, seen=None):
    n, d = features.shape
    buf = ReplayBuffer(n, (3, 2, 2), d, max_batch=n)
    buf.insert(torch.zeros(n, 3, 2, 2, dtype=torch.uint8), [f"k{i}" for i in range(n)], torch.zeros(n))
    rows = torch.arange(n) if seen is None else torch.tensor(seen)
    buf.update_features(rows, features[rows])
    return buf


def _naive_weights(features, seen, k):
    """Loops over the definition: (1 + mean cos to k nearest other seen rows) / 2, weight 1 / (d + EPS)."""
    unit = [f / f.norm() for f in features.double()]
    weights = {}
    for i in seen:
        sims = sorted((float(unit[i] @ unit[j]) for j in seen if j != i), reverse=True)[:k]
        weights[i] = 1 / ((1 + sum(sims) / len(sims)) / 2 + EPS)
    mean = sum(weights.values()) / len(weights)
    return [weights.get(i, mean) for i in range(len(features))]


def _clustered(seed=0):
    """12 rows: 8 near-identical (a crowded head), 4 spread (a tail)."""
    g = torch.Generator().manual_seed(seed)
    head = torch.tensor([1.0, 0, 0, 0]) + 0.05 * torch.randn(8, 4, generator=g)
    tail = torch.eye(4)[[1, 2, 3]] * torch.tensor([[1.0], [1.0], [-1.0]])
    return torch.cat([head, tail, -torch.eye(4)[:1] + 0.3 * torch.randn(1, 4, generator=g)])


@pytest.mark.parametrize("k", [1, 3, 10])
def test_weights_match_the_naive_reference(k):
    features = _clustered()
    seen = [0, 1, 2, 3, 5, 6, 8, 9, 10, 11]  # 4 and 7 unseen: the seen rows' mean weight
    buf = _buffer(features, seen)
    got = replay_weights(buf.features, buf.seen, k)
    assert torch.allclose(got, torch.tensor(_naive_weights(buf.features, seen, k), dtype=torch.float64), atol=1e-5)


def test_single_draw_frequencies_follow_the_normalized_weights():
    features = _clustered()
    buf = _buffer(features)
    expected = torch.tensor(_naive_weights(buf.features, list(range(12)), 10))
    expected /= expected.sum()
    gen, trials = torch.Generator().manual_seed(1), 3000
    counts = torch.zeros(12)
    for _ in range(trials):
        counts[density_sample(buf, 1, gen)] += 1
    tolerance = 4 * torch.sqrt(expected * (1 - expected) / trials)  # 4 binomial standard errors
    assert ((counts / trials - expected).abs() <= tolerance).all()
    assert counts[8:].mean() > 1.5 * counts[:8].mean()  # the sparse tail is replayed more than the head


def test_draws_are_distinct_avoid_exclude_and_are_deterministic():
    buf = _buffer(_clustered())
    exclude = torch.tensor([0, 9, 11])
    draws = [density_sample(buf, 6, torch.Generator().manual_seed(3), exclude) for _ in range(2)]
    assert draws[0].tolist() == draws[1].tolist()
    assert draws[0].unique().numel() == 6 and not set(draws[0].tolist()) & {0, 9, 11}
    assert density_sample(buf, 50, torch.Generator(), exclude).numel() == 9  # all eligible, no more


def test_fewer_than_two_seen_entries_weigh_the_same():
    buf = _buffer(_clustered(), seen=[4])
    assert torch.equal(replay_weights(buf.features, buf.seen), torch.ones(12, dtype=torch.float64))
    assert math.isclose(EPS, 0.05)


def test_the_key_is_validated_and_reaches_the_replay_draw():
    with pytest.raises(ConfigError, match=r"^learner\.replay_weighting"):
        resolve.load(SMOKE, {"learner.replay_weighting": "inverse"})
    config = resolve.load(SMOKE, {"method.name": "imai", "method.crops": 2, "learner.replay_weighting": "density"})
    learner = Learner(config, torch.device("cpu"), total_updates=3)
    calls = []
    original = learner.draw_replay
    learner.draw_replay = lambda n, exclude=None: calls.append(n) or original(n, exclude)
    for i in range(3):
        images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(i))
        learner.observe(images, [f"k{i}_{j}" for j in range(16)], torch.full((16,), i))
    assert calls == [16, 16] and len(learner.buffer) == 32
