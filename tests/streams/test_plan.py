"""plan_stream: the SCALE stream protocol (docs/method-spec.md §3), pure numpy."""

import numpy as np
import pytest

from streamssl.errors import ConfigError
from streamssl.streams import plan_sha256, plan_stream


def interleaved(num_classes: int, per_class: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


def segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """(label, run length) of consecutive runs."""
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    return [(int(labels[s]), int(n)) for s, n in zip(starts, np.diff(np.append(starts, len(labels))))]


def test_seq_classes_in_natural_order_with_first_n_of_each():
    labels = interleaved(5, 30)
    plan = plan_stream(labels, "seq", samples_per_class=12, seed=3)
    assert plan.dtype == np.int64
    assert segments(labels[plan]) == [(c, 12) for c in range(5)]
    assert len(np.unique(plan)) == len(plan)


def test_seq_shuffles_within_a_class_and_all_by_default():
    labels = interleaved(3, 50)
    plan = plan_stream(labels, "seq", seed=0)
    assert segments(labels[plan]) == [(0, 50), (1, 50), (2, 50)]
    first = plan[:50]
    assert not np.all(np.diff(first) > 0)  # not the source order
    assert set(first) == set(np.flatnonzero(labels == 0))


def test_counts_are_capped_at_what_exists():
    labels = np.array([0] * 5 + [1] * 20)
    plan = plan_stream(labels, "seq", samples_per_class=10)
    assert segments(labels[plan]) == [(0, 5), (1, 10)]
    plan = plan_stream(labels, "seq", samples_per_class=[3, 30])
    assert segments(labels[plan]) == [(0, 3), (1, 20)]


def test_class_order_random_explicit_and_subset():
    labels = interleaved(6, 4)
    random_order = [c for c, _ in segments(labels[plan_stream(labels, "seq", class_order="random", seed=1)])]
    assert sorted(random_order) == list(range(6)) and random_order != list(range(6))
    plan = plan_stream(labels, "seq", class_order=[4, 0, 2])
    assert segments(labels[plan]) == [(4, 4), (0, 4), (2, 4)]


def test_same_seed_same_bytes_other_seed_differs():
    labels = interleaved(10, 100)
    for kind in ("iid", "seq", "seq-bl", "seq-im"):
        a = plan_stream(labels, kind, seed=7)
        assert plan_sha256(a) == plan_sha256(plan_stream(labels, kind, seed=7))
        assert not np.array_equal(a, plan_stream(labels, kind, seed=8))


def test_plan_is_pinned():
    # PCG64 seeded through SeedSequence is specified bit for bit, so these hold on any machine;
    # a change here silently changes every published stream
    labels = np.tile(np.arange(3), 4)
    blended = plan_stream(labels, "seq-bl", seed=0, blend_ratio=1.0)
    assert blended.tolist() == [0, 3, 1, 9, 7, 6, 10, 11, 4, 8, 2, 5]
    iid = plan_stream(labels.astype(np.int32), "iid", seed=0)
    assert iid.tolist() == [10, 1, 0, 3, 7, 9, 4, 2, 11, 5, 8, 6]


def _blend_setup(num_classes=20, per_class=4000, seed=0):
    labels = interleaved(num_classes, per_class, seed=5)
    seq = plan_stream(labels, "seq", seed=seed)
    blended = plan_stream(labels, "seq-bl", seed=seed)
    return labels, seq, blended


def test_seq_bl_swaps_pairs_only_within_m_of_each_boundary():
    labels, seq, blended = _blend_setup(num_classes=6, per_class=400)
    m = int(400 * 0.5 / 2)
    changed = np.flatnonzero(seq != blended)
    starts = np.arange(1, 6) * 400
    dist = np.abs(changed[:, None] - starts[None, :] + 0.5).min(axis=1)
    assert len(changed) > 0 and dist.max() < m
    for s in starts:  # symmetric: s-1-i and s+i exchange their samples, or both stay
        i = np.arange(m)
        swapped = blended[s - 1 - i] != seq[s - 1 - i]
        assert np.array_equal(swapped, blended[s + i] != seq[s + i])
        assert np.array_equal(blended[s - 1 - i][swapped], seq[s + i][swapped])
        assert np.array_equal(blended[s + i][swapped], seq[s - 1 - i][swapped])
    assert np.array_equal(np.sort(seq), np.sort(blended))


def test_seq_bl_swap_rate_half_at_boundary_falling_to_005():
    labels, seq, blended = _blend_setup()
    m, starts = 1000, np.arange(1, 20) * 4000
    i = np.arange(m)
    swapped = np.stack([blended[s + i] != seq[s + i] for s in starts])  # (19, m)
    near, far = swapped[:, :100].mean(), swapped[:, -100:].mean()
    # expected: mean p over i < 100 is 0.478, over the last 100 is 0.073 (1,900 draws each)
    assert 0.44 < near < 0.52
    assert 0.04 < far < 0.11
    slope = np.polyfit(i, swapped.mean(axis=0), 1)[0] * m
    assert -0.55 < slope < -0.35  # p_i = 0.5 - 0.45 i / m


def test_seq_bl_m_uses_the_smaller_neighbour_and_ratio_zero_is_seq():
    labels = np.repeat(np.arange(3), [100, 20, 100])
    seq = plan_stream(labels, "seq", seed=2)
    blended = plan_stream(labels, "seq-bl", seed=2, blend_ratio=1.0)
    changed = np.flatnonzero(seq != blended)
    assert np.all((np.abs(changed - 100 + 0.5) < 10) | (np.abs(changed - 120 + 0.5) < 10))
    assert np.array_equal(plan_stream(labels, "seq-bl", seed=2, blend_ratio=0.0), seq)


def test_seq_im_scale_patterns():
    labels = interleaved(10, 50)
    plan = plan_stream(labels, "seq-im", samples_per_class=40)
    assert [n for _, n in segments(labels[plan])] == [20, 40, 20, 40, 20, 20, 40, 20, 20, 40]
    labels20 = interleaved(20, 10)
    counts = [n for _, n in segments(labels20[plan_stream(labels20, "seq-im")])]
    assert [i for i, n in enumerate(counts) if n == 5] == [0, 4, 9, 14, 19]
    assert set(counts) == {5, 10}


def test_seq_im_other_class_counts_and_explicit_list():
    labels = interleaved(5, 10)
    counts = [n for _, n in segments(labels[plan_stream(labels, "seq-im", seed=4)])]
    assert sorted(counts) == [5, 5, 10, 10, 10]
    explicit = plan_stream(labels, "seq-im", samples_per_class=[1, 2, 3, 4, 50])
    assert [n for _, n in segments(labels[explicit])] == [1, 2, 3, 4, 10]


def test_iid_takes_n_per_class_uniformly_mixed():
    labels = interleaved(4, 500)
    plan = plan_stream(labels, "iid", samples_per_class=300, seed=1)
    assert np.bincount(labels[plan]).tolist() == [300] * 4
    assert len(segments(labels[plan])) > 600  # a grouped stream would have 4 runs
    assert set(plan) <= set(range(len(labels)))


def test_label_column_and_classes_per_segment():
    labels = interleaved(6, 20)
    plan = plan_stream(labels, "seq", classes_per_segment=2, seed=0)
    stream = labels[plan]
    for s in range(3):
        part = stream[s * 40:(s + 1) * 40]
        assert set(part) == {2 * s, 2 * s + 1}
        assert set(part[:20]) == {2 * s, 2 * s + 1}  # mixed, not one class after the other
    coarse = labels // 2  # a second label column segments by superclass
    assert [c for c, _ in segments(coarse[plan_stream(coarse, "seq")])] == [0, 1, 2]


def test_classes_per_segment_counts_per_segment_list():
    labels = interleaved(4, 10)
    plan = plan_stream(labels, "seq", classes_per_segment=2, samples_per_class=[2, 6])
    assert np.bincount(labels[plan]).tolist() == [2, 2, 6, 6]
    blended = plan_stream(labels, "seq-bl", classes_per_segment=2, seed=0)
    assert np.array_equal(np.sort(blended), np.arange(40))


def test_custom_orders_by_a_column():
    labels = interleaved(3, 10)
    score = np.random.default_rng(0).random(30)
    plan = plan_stream(labels, "custom", order_by=score)
    assert np.all(np.diff(score[plan]) >= 0)
    per_class = np.array([2.0, 0.0, 1.0])[labels]  # a class-level score orders whole classes
    assert [c for c, _ in segments(labels[plan_stream(labels, "custom", order_by=per_class)])] == [1, 2, 0]


@pytest.mark.parametrize("kwargs, name", [
    ({"kind": "zigzag"}, "kind"),
    ({"kind": "seq", "samples_per_class": [1, 2]}, "samples_per_class"),
    ({"kind": "seq", "samples_per_class": -1}, "samples_per_class"),
    ({"kind": "seq", "samples_per_class": 0}, "samples_per_class"),
    ({"kind": "seq", "class_order": [0, 9]}, "class_order"),
    ({"kind": "seq", "class_order": [0, 0]}, "class_order"),
    ({"kind": "seq", "class_order": "sorted"}, "class_order"),
    ({"kind": "seq-bl", "blend_ratio": 1.5}, "blend_ratio"),
    ({"kind": "seq", "classes_per_segment": 0}, "classes_per_segment"),
    ({"kind": "custom"}, "order_by"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    """The library names its own argument; the CLI and the pipeline map it (errors.renamed)."""
    with pytest.raises(ConfigError, match=f"^{name}: "):
        plan_stream(np.tile(np.arange(3), 4), **kwargs)


def test_many_small_classes_blend_into_a_permutation():
    labels = np.random.default_rng(0).integers(0, 2000, 200_000)
    plan = plan_stream(labels, "seq-bl", seed=0)
    assert np.array_equal(np.sort(plan), np.arange(200_000))
    runs = segments(labels[plan])
    assert runs[0][0] == 0 and runs[-1][0] == 1999
