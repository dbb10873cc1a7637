"""buffer.protect_new: new entries survive the resizes of their protection window, for every policy."""

import io
import math

import pytest
import torch
from greedy_reference import select_diverse_naive

from streamssl import resolve
from streamssl.buffers import POLICIES, ReplayBuffer, Reservoir, oldest, psa_select, resize
from streamssl.errors import ConfigError

DIM = 6


def _step(buf, step, b, gen):
    """Insert batch `step` (keys are the stream position), then EMA-update it and b replayed entries."""
    ids = torch.arange(step * b, (step + 1) * b)
    slots = buf.insert(torch.zeros(b, 3, 2, 2, dtype=torch.uint8), [str(i) for i in ids.tolist()], ids % 7)
    replay = buf.sample(b, gen, exclude=slots)
    touched = torch.cat([slots, replay])
    buf.update_features(touched, torch.randn(touched.numel(), DIM, generator=gen))


def _reference(name, buf, n_remove, protect):
    """Naive removal: the policy's rule applied to the unprotected entries alone (P * B fit, as validated)."""
    candidates = torch.nonzero(buf.lifespan > protect).squeeze(1)
    features, lifespan = buf.features[candidates], buf.lifespan[candidates]
    if name == "fifo":
        return candidates[oldest(lifespan, n_remove)]
    if name == "diverse":
        return candidates[select_diverse_naive(features, n_remove, buf.seen[candidates], lifespan)]
    keep = torch.zeros(candidates.numel(), dtype=torch.bool)
    keep[psa_select(features, candidates.numel() - n_remove)] = True
    return candidates[~keep]


@pytest.mark.parametrize("protect", [1, 2])
@pytest.mark.parametrize("name", ["fifo", "diverse", "psa"])
def test_resize_equals_the_policy_rule_on_the_unprotected_entries(name, protect):
    capacity, b = 20, 6
    buf = ReplayBuffer(capacity, (3, 2, 2), DIM, max_batch=b, protect_new=protect)
    policy, gen = POLICIES[name](), torch.Generator().manual_seed(3)
    resizes = 0
    for step in range(12):
        _step(buf, step, b, gen)
        n_remove = len(buf) - capacity
        if n_remove <= 0:
            continue
        expected = _reference(name, buf, n_remove, protect)
        assert torch.equal(resize(buf, policy, gen), expected), step  # same slots, same removal order
        resizes += 1
    assert resizes >= 8


@pytest.mark.parametrize("protect", [1, 2])
@pytest.mark.parametrize("name", sorted(POLICIES))
def test_protected_entries_are_never_removed_and_the_buffer_stays_at_capacity(name, protect):
    capacity, b = 14, 4
    buf = ReplayBuffer(capacity, (3, 2, 2), DIM, max_batch=b, protect_new=protect)
    policy, gen = POLICIES[name](), torch.Generator().manual_seed(1)
    for step in range(15):
        _step(buf, step, b, gen)
        # keys are stream positions: the latest `protect` batches are positions >= (step + 1 - protect) * b
        protected = {str(i) for i in range(max(step + 1 - protect, 0) * b, (step + 1) * b)}
        resize(buf, policy, gen)
        assert protected <= set(buf.keys), step
        assert len(buf) == min(capacity, (step + 1) * b)


def _removals(name, steps, protect=None, seed=0, capacity=20, b=6):
    kwargs = {} if protect is None else {"protect_new": protect}
    buf = ReplayBuffer(capacity, (3, 2, 2), DIM, max_batch=b, **kwargs)
    policy, gen = POLICIES[name](), torch.Generator().manual_seed(seed)
    log = []
    for step in range(steps):
        _step(buf, step, b, gen)
        if policy.needs_sample_loss:  # hard: losses for every entry, else it ranks by age alone
            policy.record_losses(buf, torch.arange(len(buf)), torch.rand(len(buf), generator=gen))
        log.append((resize(buf, policy, gen).tolist(), list(buf.keys), buf.features.clone()))
    return log


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_protect_new_0_is_the_unprotected_buffer_bit_for_bit(name):
    default, zero = _removals(name, 10), _removals(name, 10, protect=0)
    for (removed_a, keys_a, feats_a), (removed_b, keys_b, feats_b) in zip(default, zero):
        assert removed_a == removed_b and keys_a == keys_b and torch.equal(feats_a, feats_b)
    if name != "fifo":  # FIFO removes the oldest entries, never new ones: protection cannot matter
        protected = _removals(name, 10, protect=1)
        assert [keys for _, keys, _ in protected] != [keys for _, keys, _ in zero]


def _reservoir_members(seed, steps=10, capacity=9, b=3, protect=1):
    buf = ReplayBuffer(capacity, (3, 1, 1), 2, max_batch=b, protect_new=protect)
    policy, gen = Reservoir(), torch.Generator().manual_seed(seed)
    for step in range(steps):
        ids = torch.arange(step * b, (step + 1) * b)
        buf.insert(torch.zeros(b, 3, 1, 1, dtype=torch.uint8), [str(i) for i in ids.tolist()], ids)
        resize(buf, policy, gen)
    return buf.labels.tolist()


def test_reservoir_with_protection_is_uniform_over_the_entries_that_left_it():
    # capacity 9 with the last batch of 3 protected: the other 6 places are a uniform sample of
    # the 27 entries that left protection (Algorithm R, delayed by one stream batch)
    runs, old, places = 600, 27, 6
    counts = torch.zeros(30)
    for seed in range(runs):
        counts[_reservoir_members(seed)] += 1
    assert (counts[old:] == runs).all()  # the newest batch, protected, is always there
    p = places / old
    expected = runs * p
    stat = float(((counts[:old] - expected) ** 2).sum() / (expected * (1 - p)))
    dof = old - 1
    critical = dof * (1 - 2 / (9 * dof) + 3.09 * math.sqrt(2 / (9 * dof))) ** 3  # chi-square 99.9%
    assert stat < critical, (stat, critical)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_protection_beyond_capacity_yields_from_the_oldest_insert(name):
    # capacity 6, batches of 4, protect 3: 12 protected entries cannot fit, so only the newest
    # inserts that fit whole keep protection (here the latest one); the buffer still ends at 6
    buf = ReplayBuffer(6, (3, 2, 2), DIM, max_batch=4, protect_new=3)
    policy, gen = POLICIES[name](), torch.Generator().manual_seed(2)
    for step in range(6):
        _step(buf, step, 4, gen)
        resize(buf, policy, gen)
        assert len(buf) == min(6, 4 * (step + 1))
        assert {str(i) for i in range(4 * step, 4 * step + 4)} <= set(buf.keys)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_state_round_trip_keeps_protection(name):
    buf = ReplayBuffer(20, (3, 2, 2), DIM, max_batch=6, protect_new=2)
    policy, gen = POLICIES[name](), torch.Generator().manual_seed(4)
    for step in range(5):
        _step(buf, step, 6, gen)
        resize(buf, policy, gen)
    blob = io.BytesIO()
    torch.save({"buffer": buf.state_dict(), "policy": policy.state_dict(), "gen": gen.get_state()}, blob)
    blob.seek(0)
    state = torch.load(blob, weights_only=True)
    twin = ReplayBuffer(20, (3, 2, 2), DIM, max_batch=6, protect_new=2)
    twin.load_state_dict(state["buffer"])
    twin_policy = POLICIES[name]()
    twin_policy.load_state_dict(state["policy"])
    twin_gen = torch.Generator()
    twin_gen.set_state(state["gen"])
    for step in range(5, 9):
        for b, p, g in ((buf, policy, gen), (twin, twin_policy, twin_gen)):
            _step(b, step, 6, g)
            resize(b, p, g)
        assert buf.keys == twin.keys and torch.equal(buf.lifespan, twin.lifespan)
    with pytest.raises(ValueError, match="buffer.protect_new=2, this buffer has 0"):
        ReplayBuffer(20, (3, 2, 2), DIM, max_batch=6).load_state_dict(buf.state_dict())


def test_states_saved_before_protect_new_existed_load_as_0():
    buf = ReplayBuffer(8, (3, 2, 2), DIM, max_batch=4)
    _step(buf, 0, 4, torch.Generator())
    state = buf.state_dict()
    del state["protect_new"]
    twin = ReplayBuffer(8, (3, 2, 2), DIM, max_batch=4)
    twin.load_state_dict(state)
    assert twin.keys == buf.keys


@pytest.mark.parametrize(("overrides", "message"), [
    (["buffer.protect_new=-1"], "buffer.protect_new: must be >= 0, got -1"),
    (["buffer.protect_new=3"], r"buffer.protect_new: 3 x learner.stream_batch \(16\) .* buffer.size \(32\)"),
])
def test_invalid_protect_new_is_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve.load("pipelines/smoke.yaml", overrides)
    assert resolve.load("pipelines/smoke.yaml", ["buffer.protect_new=2"]).buffer.protect_new == 2


def test_fresh_reservoir_policy_under_protection_makes_the_same_choices():
    # a policy rebuilt without state (e.g. after a resume) takes the batch leaving protection as pending
    first = _reservoir_members(seed=5)
    buf = ReplayBuffer(9, (3, 1, 1), 2, max_batch=3, protect_new=1)
    policy, gen = Reservoir(), torch.Generator().manual_seed(5)
    for step in range(10):
        if step == 6:
            policy = Reservoir()
        ids = torch.arange(step * 3, (step + 1) * 3)
        buf.insert(torch.zeros(3, 3, 1, 1, dtype=torch.uint8), [str(i) for i in ids.tolist()], ids)
        resize(buf, policy, gen)
    assert buf.labels.tolist() == first
