import heapq

import pytest
import torch

from streamssl.buffers import PSA, ReplayBuffer, psa_select


def naive_psa(points, m):
    """Salomon et al.'s PSA one split at a time with a heap: widest box first, midpoint split, then
    per cell the point nearest (Euclidean) to the centre of its tight bounding box."""
    rows = points.tolist()

    def box(members):
        lo = [min(rows[i][d] for i in members) for d in range(len(rows[0]))]
        hi = [max(rows[i][d] for i in members) for d in range(len(rows[0]))]
        widths = [top - bottom for bottom, top in zip(lo, hi)]
        dim = max(range(len(widths)), key=lambda d: (widths[d], -d))  # first widest dimension
        return -widths[dim], members, lo, hi, dim

    heap, counter = [], 0
    entry = box(list(range(len(rows))))
    heap.append((entry[0], counter, entry))
    while len(heap) < m:
        _, _, (_, members, lo, hi, dim) = heapq.heappop(heap)
        mid = (lo[dim] + hi[dim]) / 2
        for side in ([i for i in members if rows[i][dim] < mid], [i for i in members if rows[i][dim] >= mid]):
            counter += 1
            child = box(side)
            heapq.heappush(heap, (child[0], counter, child))
    keep = []
    for _, _, (_, members, lo, hi, _) in heap:
        centre = [(a + b) / 2 for a, b in zip(lo, hi)]
        keep.append(min(members, key=lambda i: (sum((x - c) ** 2 for x, c in zip(rows[i], centre)), i)))
    return sorted(keep)


@pytest.mark.parametrize("n, d, m, seed", [(40, 3, 10, 0), (60, 8, 25, 1), (30, 2, 29, 2), (50, 16, 1, 3)])
def test_equals_naive_heap_implementation(n, d, m, seed):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.rand(d, generator=g, dtype=torch.float64)
    keep = psa_select(points, m)
    assert keep.tolist() == naive_psa(points, m)


def test_heavy_tailed_points_split_deep_before_wide():
    """1-D points at 2^k: each split peels off the largest, so the tree is a chain."""
    points = (2.0 ** torch.arange(12, dtype=torch.float64)).unsqueeze(1)
    assert psa_select(points, 5).tolist() == naive_psa(points, 5)


def test_keeps_one_point_per_planted_cluster():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    labels = torch.arange(4).repeat_interleave(20)
    points = centres[labels] + 0.1 * torch.randn(80, 2, generator=g)
    keep = psa_select(points, 4)
    assert sorted(labels[keep].tolist()) == [0, 1, 2, 3]


def test_duplicates_are_topped_up_to_m():
    points = torch.tensor([[0.0], [0.0], [1.0], [1.0], [1.0]])
    assert psa_select(points, 3).tolist() == [0, 1, 2]  # 2 distinct cells + the lowest unselected index
    assert psa_select(points, 9).tolist() == [0, 1, 2, 3, 4]


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="psa_select"):
        psa_select(torch.zeros(4), 2)
    with pytest.raises(ValueError, match="m >= 1"):
        psa_select(torch.zeros(4, 2), 0)


def test_policy_removes_the_complement_of_the_psa_subset():
    buf = ReplayBuffer(6, (3, 2, 2), 2, max_batch=4)
    g = torch.Generator().manual_seed(0)
    buf.insert(torch.zeros(10, 3, 2, 2, dtype=torch.uint8)[:4], list("abcd"), torch.zeros(4, dtype=torch.long))
    buf.insert(torch.zeros(6, 3, 2, 2, dtype=torch.uint8), list("efghij"), torch.zeros(6, dtype=torch.long))
    buf.features.copy_(torch.randn(10, 2, generator=g))  # what the learner writes: raw embeddings
    keep = psa_select(buf.features.clone(), 6)
    removed = PSA().select(buf, 4, g)
    assert sorted(removed.tolist() + keep.tolist()) == list(range(10))
    assert PSA.embeds


@pytest.mark.parametrize("method, schedule", [("simclr", "accv"), ("minred", "minred")])
def test_any_method_can_keep_a_psa_memory_of_eval_mode_backbone_embeddings(method, schedule):
    from streamssl import resolve
    from streamssl.train.learner import Learner

    config = resolve.load("pipelines/smoke.yaml", [f"method.name={method}", "buffer.policy=psa", "learner.k=1"])
    assert config.learner.schedule == schedule
    learner = Learner(config, torch.device("cpu"), total_updates=10)
    checks, select = [], learner.policy.select

    def spy(buffer, n_remove, generator):  # at every resize: features == the current model's embeddings
        fresh = learner.method.memory_embeddings(buffer.images)
        checks.append(torch.allclose(buffer.features, fresh, atol=1e-5))
        return select(buffer, n_remove, generator)

    learner.policy.select = spy
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        images = torch.randint(0, 256, (16, 3, 16, 16), generator=g, dtype=torch.uint8)
        learner.observe(images, [f"k{i}_{j}" for j in range(16)], torch.full((16,), i))
    assert len(learner.buffer) == 32 and learner.buffer.features.shape == (32, learner.method.backbone_dim)
    assert checks and all(checks)
