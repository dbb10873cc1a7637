"""global_dedup: equals the naive greedy; threshold and max_fraction stop rules; seen-only."""

import pytest
import torch

from streamssl.buffers import global_dedup, global_dedup_naive


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
    assert torch.equal(fast, global_dedup_naive(feats, seen, ranks, threshold, max_fraction))


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
