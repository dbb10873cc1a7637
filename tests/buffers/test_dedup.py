"""global_dedup: the float64 rule up to 1e-5 and the naive greedy bit for bit; stop rules; seen-only."""

import pytest
import torch
from greedy_reference import check_near_greedy, clusters, global_dedup_exact, global_dedup_naive, near_tie_pairs

from streamssl.buffers import global_dedup


def _union(m, d, seed, copies=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(m, d, generator=g)
    for i in range(copies):
        feats[m - 1 - i] = feats[i] + 0.05 * torch.randn(d, generator=g)  # near-duplicates across ranks
    seen = torch.rand(m, generator=g) < 0.9
    ranks = torch.arange(m) * 3 // m  # 3 workers, (rank, index) order
    return feats, seen, ranks


@pytest.mark.parametrize("threshold,max_fraction", [(0.9, 0.5), (0.3, 0.1), (-1.0, 0.45), (0.99, 1.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_naive(threshold, max_fraction, seed):
    feats, seen, ranks = _union(300, 8, seed, copies=40)
    fast = global_dedup(feats, seen, ranks, threshold, max_fraction)
    assert torch.equal(fast, global_dedup_naive(feats, seen, threshold, max_fraction))


def test_threshold_stops_at_the_first_dissimilar_pair():
    feats, seen, ranks = _union(200, 16, 2, copies=30)
    seen[:] = True
    removed = global_dedup(feats, seen, ranks, 0.95, 1.0)
    # exactly one of each planted near-duplicate pair goes (random 16-d vectors are far below 0.95)
    assert removed.numel() == 30
    assert ((removed < 30) | (removed >= 170)).all()
    assert global_dedup(feats, seen, ranks, 1.01, 1.0).numel() == 0


def test_max_fraction_counts_all_entries_seen_or_not():
    feats = torch.ones(10, 4)  # all identical: everything above any threshold
    seen = torch.tensor([True] * 6 + [False] * 4)
    ranks = torch.zeros(10, dtype=torch.long)
    assert global_dedup(feats, seen, ranks, 0.5, 0.29).tolist() == [0, 1]  # floor(0.29 * 10) = 2
    assert global_dedup(feats, seen, ranks, 0.5, 1.0).tolist() == [0, 1, 2, 3, 4]  # one seen entry is left
    assert global_dedup(feats, seen, ranks, 0.5, 0.0).numel() == 0


def test_unseen_entries_are_ignored():
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    seen = torch.tensor([True, False, True, False])
    ranks = torch.tensor([0, 0, 1, 1])
    assert global_dedup(feats, seen, ranks, 0.5, 1.0).numel() == 0  # the copies are unseen


def test_bad_arguments_raise():
    feats, seen, ranks = _union(10, 4, 0)
    with pytest.raises(ValueError, match="max_fraction"):
        global_dedup(feats, seen, ranks, 0.9, 1.5)
    with pytest.raises(ValueError, match="ranks"):
        global_dedup(feats, seen, ranks[:3], 0.9, 0.5)
    with pytest.raises(ValueError, match="threshold"):
        global_dedup(feats, seen, ranks, float("nan"), 0.5)


def test_near_ties_and_the_threshold_follow_the_float64_rule():
    # pair cosines 0.95, 0.9501, ..., 0.9539; the threshold falls halfway between two of them
    for seed in range(3):
        feats, order = near_tie_pairs(40, 256, seed)
        seen, ranks = torch.ones(80, dtype=torch.bool), torch.arange(80) // 27
        threshold = 0.95 + 19.5e-4  # the 20 pairs at 0.9520 and above go
        assert torch.equal(global_dedup_exact(feats, seen, threshold, 1.0), order[:20])
        assert torch.equal(global_dedup(feats, seen, ranks, threshold, 1.0), order[:20]), seed
        assert torch.equal(global_dedup(feats, seen, ranks, -1.0, 0.25), order[:20]), seed  # cap: 20 of 80


@pytest.mark.parametrize("threshold", [0.9985, 0.9988])
def test_clustered_features_follow_the_float64_rule_up_to_1e5(threshold):
    feats = clusters(300, 64, 6, 0.05, 11)
    seen = torch.ones(300, dtype=torch.bool)
    removed = global_dedup(feats, seen, torch.zeros(300, dtype=torch.long), threshold, 0.6)
    assert 0 < removed.numel() < 180  # the threshold, not the cap, ends the run
    check_near_greedy(feats, seen, removed, 180, threshold)
