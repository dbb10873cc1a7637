"""Diverse policy: the cross-batch neighbour cache gives exactly what select_diverse gives."""

import pytest
import torch

from streamssl.buffers import Diverse, ReplayBuffer, resize, select_diverse


def _stream_step(buf, step, b, gen, dim, prototypes):
    ids = torch.arange(step * b, (step + 1) * b)
    slots = buf.insert(torch.zeros(b, 3, 1, 1, dtype=torch.uint8), [str(i) for i in ids.tolist()], ids)
    for _ in range(2):  # K updates touch the new entries and a few replayed ones
        replay = buf.sample(b // 2, gen, exclude=slots)
        touched = torch.cat([slots, replay])
        # features near a few prototypes: many close pairs, some exact duplicates
        which = torch.randint(0, prototypes.shape[0], (touched.numel(),), generator=gen)
        noisy = torch.rand(touched.numel(), 1, generator=gen) < 0.9
        noise = 0.3 * noisy * torch.randn(touched.numel(), dim, generator=gen)
        buf.update_features(touched, prototypes[which] + noise)


@pytest.mark.parametrize("neighbours", [1, 3, 8])
def test_incremental_selection_equals_one_shot_over_a_stream(neighbours):
    # short lists force every repair path: dead list entries, merges below the bound, rescans
    dim, b, capacity = 12, 16, 96
    gen = torch.Generator().manual_seed(0)
    prototypes = torch.randn(20, dim, generator=gen)
    buf = ReplayBuffer(capacity, (3, 1, 1), dim, max_batch=b)
    policy = Diverse(Diverse.Params(neighbours=neighbours, rebuild_fraction=0.9))
    incremental_steps = 0
    for step in range(30):
        _stream_step(buf, step, b, gen, dim, prototypes)
        if step % 7 == 6:  # an outside removal (like a global dedup) between resizes
            buf.remove(buf.sample(5, gen))
        n_remove = len(buf) - capacity
        if n_remove <= 0:
            continue
        expected = select_diverse(buf.features, n_remove, buf.seen, buf.lifespan)
        got = policy.select(buf, n_remove, gen)
        assert torch.equal(got, expected), step
        incremental_steps += policy.last_stats.get("computed", len(buf)) < policy.last_stats.get("rows", 0)
        buf.remove(got)
    assert incremental_steps >= 10  # the cache was really used


def _small_buffer(seed):
    """(dim, b, generator, prototypes, empty buffer of 40) for the short streams below."""
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(6, 8, generator=gen)
    return 8, 10, gen, prototypes, ReplayBuffer(40, (3, 1, 1), 8, max_batch=10)


def test_cache_is_only_an_accelerator():
    # a policy restored without its cache (fresh) and one with it choose the same entries
    dim, b, gen, prototypes, buf = _small_buffer(1)
    warm = Diverse()
    for step in range(12):
        _stream_step(buf, step, b, gen, dim, prototypes)
        n_remove = len(buf) - 40
        if n_remove > 0:
            assert torch.equal(warm.select(buf, n_remove, gen), Diverse().select(buf, n_remove, gen))
            resize(buf, warm, gen)


def test_cache_survives_a_reload_of_an_older_buffer_state():
    # the policy keeps its (newer) cache while the buffer goes back in time and takes another path
    dim, b, gen, prototypes, buf = _small_buffer(2)
    policy = Diverse(Diverse.Params(neighbours=2))
    snapshot = None
    for step in range(14):
        if step == 6:
            snapshot = buf.state_dict()
        if step == 10:
            buf.load_state_dict(snapshot)
        _stream_step(buf, step, b, gen, dim, prototypes)
        n_remove = len(buf) - 40
        if n_remove > 0:
            expected = select_diverse(buf.features, n_remove, buf.seen, buf.lifespan)
            assert torch.equal(policy.select(buf, n_remove, gen), expected), step
            buf.remove(expected)


def test_a_cache_from_the_old_float32_grid_is_rebuilt_not_mixed_in():
    # checkpoints written before the float64 grid hold float32 similarities in other units
    dim, b, gen, prototypes, buf = _small_buffer(3)
    policy = Diverse()
    for step in range(6):
        _stream_step(buf, step, b, gen, dim, prototypes)
        resize(buf, policy, gen)
    old = {key: (t / 2.0**28).float() if t.is_floating_point() else t for key, t in policy.state_dict().items()}
    restored = Diverse(Diverse.Params(rebuild_fraction=0.9))  # would reuse a usable cache
    restored.load_state_dict(old)
    _stream_step(buf, 6, b, gen, dim, prototypes)
    expected = select_diverse(buf.features, len(buf) - 40, buf.seen, buf.lifespan)
    assert torch.equal(restored.select(buf, len(buf) - 40, gen), expected)
    assert restored.last_stats["computed"] == restored.last_stats["rows"]  # rebuilt from scratch
