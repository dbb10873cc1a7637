"""select_diverse: the float64 greedy rule up to 1e-5, the naive procedure bit for bit, everywhere alike."""

import pytest
import torch
import torch.nn.functional as F
from greedy_reference import (
    check_near_greedy,
    clusters,
    naive_greedy,
    near_tie_pairs,
    select_diverse_exact,
    select_diverse_naive,
)

from streamssl.buffers import oldest, select_diverse
from streamssl.buffers.neighbours import (
    NeighbourGraph,
    fixed_point_scale,
    quantize,
    similarity,
    similarity_error_bound,
)


def _state(m, d, seed, seen_p=0.9, duplicates=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(m, d, generator=g) * torch.rand(m, 1, generator=g) * 5  # unnormalized
    for i in range(duplicates):  # planted exact duplicates (same direction, different norm)
        feats[m - 1 - i] = 2.0 * feats[i]
    seen = torch.rand(m, generator=g) < seen_p
    lifespan = torch.randint(1, 6, (m,), generator=g)
    return feats, seen, lifespan


@pytest.mark.parametrize("m,d,n", [(12, 3, 4), (64, 8, 20), (240, 16, 80), (600, 32, 150)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_naive(m, d, n, seed):
    feats, seen, lifespan = _state(m, d, seed, duplicates=m // 10)
    fast = select_diverse(feats, n, seen, lifespan)
    assert torch.equal(fast, select_diverse_naive(feats, n, seen, lifespan))
    assert fast.numel() == n and fast.unique().numel() == n


def test_equals_naive_with_heavy_ties():
    # few distinct directions in 2-D: many exact duplicates and many equal similarities
    g = torch.Generator().manual_seed(3)
    angles = torch.randint(0, 6, (120,), generator=g).float() * (torch.pi / 3)
    feats = torch.stack([angles.cos(), angles.sin()], 1)
    seen = torch.ones(120, dtype=torch.bool)
    lifespan = torch.ones(120, dtype=torch.long)
    fast = select_diverse(feats, 58, seen, lifespan)
    assert torch.equal(fast, select_diverse_naive(feats, 58, seen, lifespan))


def test_mutual_neighbours_tie_to_lowest_index():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
    seen = torch.ones(5, dtype=torch.bool)
    # 1 and 3 are identical (similarity 1, mutual nearest neighbours): the lower index goes first
    assert select_diverse(feats, 1, seen, torch.ones(5, dtype=torch.long)).tolist() == [1]


def test_fallback_removes_oldest_among_all_entries():
    feats = torch.randn(6, 4)
    seen = torch.tensor([True, True, True, False, False, False])  # 3 seen < 2 * 2
    lifespan = torch.tensor([2, 5, 1, 5, 3, 7])
    assert select_diverse(feats, 2, seen, lifespan).tolist() == [5, 1]  # 7, then 5 (lowest index)
    assert oldest(lifespan, 4).tolist() == [5, 1, 3, 4]


def test_unseen_entries_are_neither_candidates_nor_neighbours():
    feats, seen, lifespan = _state(80, 6, 4, seen_p=0.7)
    # an unseen copy of a seen row must not make that row a near-duplicate, nor be removed
    feats[~seen] = feats[torch.nonzero(seen)[0]].expand(int((~seen).sum()), -1)
    out = select_diverse(feats, 15, seen, lifespan)
    assert seen[out].all()
    only_seen = select_diverse(feats[seen], 15, torch.ones(int(seen.sum()), dtype=torch.bool), lifespan[seen])
    assert torch.equal(out, torch.nonzero(seen).squeeze(1)[only_seen])


def test_similarity_is_exact_in_any_blocking_and_summation_order():
    q = quantize(torch.randn(257, 96))
    full = similarity(q, q)
    assert torch.equal(full, full.T)
    assert torch.equal(full[37:150], similarity(q[37:150], q))
    assert torch.equal(full[:, 5], similarity(q, q[5:6]).squeeze(1))
    perm = torch.randperm(96, generator=torch.Generator().manual_seed(0))
    assert torch.equal(full, similarity(q[:, perm], q[:, perm]))  # another order of the same sums


def test_grid_cosine_is_within_the_bound_of_the_float64_cosine():
    feats = torch.randn(300, 1024, generator=torch.Generator().manual_seed(1))
    q = quantize(feats)
    assert q.dtype == torch.float64 and torch.equal(q, q.round())
    x = F.normalize(feats.double())
    err = (similarity(q, q) / fixed_point_scale(1024) ** 2 - x @ x.T).abs().max()
    assert similarity_error_bound(1024) < 5e-7
    assert err <= similarity_error_bound(1024)
    assert torch.equal(quantize(feats[40:41]), q[40:41])  # a row alone gets the numbers it gets in a batch


def test_graph_rescans_when_lists_run_dry():
    # clusters of 6 copies: with 2-entry lists, removing copies empties lists and forces rescans
    g = torch.Generator().manual_seed(5)
    centres = torch.randn(10, 16, generator=g)
    q = quantize(centres.repeat_interleave(6, 0) + 0.01 * torch.randn(60, 16, generator=g))
    graph = NeighbourGraph.build(q, k=2)
    assert torch.equal(graph.greedy(40), naive_greedy(q, 40))
    assert graph.rescanned > 0


def test_bad_inputs_raise():
    feats = torch.randn(5, 3)
    seen = torch.ones(5, dtype=torch.bool)
    life = torch.ones(5, dtype=torch.long)
    with pytest.raises(ValueError, match="n_remove"):
        select_diverse(feats, 6, seen, life)
    with pytest.raises(ValueError, match="seen"):
        select_diverse(feats, 1, seen[:4], life)
    with pytest.raises(ValueError, match="NaN"):
        select_diverse(torch.full((5, 3), float("nan")), 1, seen, life)


def test_near_ties_are_ordered_as_the_float64_rule_orders_them():
    # 40 pairs with cosines 1e-4 apart: the old 12-bit grid (error ~1e-4) swapped some of them
    for seed in range(3):
        feats, expected = near_tie_pairs(40, 256, seed)
        seen, life = torch.ones(80, dtype=torch.bool), torch.ones(80, dtype=torch.long)
        assert torch.equal(select_diverse_exact(feats, 40, seen, life), expected)
        assert torch.equal(select_diverse(feats, 40, seen, life), expected), seed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clustered_features_follow_the_float64_rule_up_to_1e5(seed):
    feats = clusters(400, 64, 8, 0.05, seed)
    seen = torch.rand(400, generator=torch.Generator().manual_seed(seed)) < 0.95
    removed = select_diverse(feats, 150, seen, torch.ones(400, dtype=torch.long))
    check_near_greedy(feats, seen, removed, 150)


def test_same_removals_for_any_thread_count_and_dimension_order():
    feats = clusters(400, 192, 12, 0.05, 7)
    seen, life = torch.ones(400, dtype=torch.bool), torch.ones(400, dtype=torch.long)
    perm = torch.randperm(192, generator=torch.Generator().manual_seed(7))
    before = torch.get_num_threads()
    runs = []
    try:
        for threads, order in ((1, slice(None)), (2, slice(None)), (1, perm), (2, perm)):
            torch.set_num_threads(threads)
            runs.append(select_diverse(feats[:, order], 150, seen, life))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    assert torch.equal(runs[0], select_diverse_naive(feats, 150, seen, life))
