"""streamssl.distributed and the global dedup round: world size 1 in process, world size 2 on gloo.

The 2-rank tests spawn two processes that join a gloo group through a file in tmp_path; each rank
saves its results with torch.save and the parent compares them with a single-process reference.
(torch.distributed is imported here only to create and destroy the test's process group.)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from streamssl import distributed
from streamssl.buffers import ReplayBuffer, global_dedup
from streamssl.losses import mcc_loss, tcr_loss
from streamssl.train.dedup_round import global_dedup_round

WORLD = 2
N_CROPS, D_IN, D = 3, 5, 4
TAU, EPS, LAMBDA_MCC, LAMBDA_TCR = 0.5, 0.2, 2.0, 1.0
BATCHES = {"equal": (3, 3), "unequal": (2, 4)}


# ---------------------------------------------------------------- spawn harness


def _entry(rank: int, body, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=WORLD)
    try:
        torch.save(body(rank), f"{tmp}/out{rank}.pt")
    finally:
        dist.destroy_process_group()


def _spawn(body, tmp_path) -> list:
    mp.spawn(_entry, args=(body, str(tmp_path)), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"out{r}.pt", weights_only=False) for r in range(WORLD)]


# ---------------------------------------------------------------- MCC + TCR through the gather


def _inputs(total: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(N_CROPS, total, D_IN, generator=g, dtype=torch.float64)
    w = torch.randn(D_IN, D, generator=g, dtype=torch.float64)
    return x, w


def _loss(x: torch.Tensor, w: torch.Tensor, variant: str) -> torch.Tensor:
    """Imai's loss on this rank's images, negatives and TCR gathered over all ranks."""
    z = F.normalize(x @ w, dim=-1)  # (N, b, d): a linear projection head
    g = distributed.gather_crops(z)
    mcc = g.weight * mcc_loss(z, TAU, variant, **g.mcc_kwargs(variant))
    return LAMBDA_MCC * mcc + LAMBDA_TCR * tcr_loss(g.crops, EPS)


def _loss_and_grad(x: torch.Tensor, w: torch.Tensor, variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    w = w.clone().requires_grad_(True)
    loss = _loss(x, w, variant)
    loss.backward()
    return loss.detach(), w.grad


def _ddp_losses(rank: int) -> dict:
    out = {}
    for name, sizes in BATCHES.items():
        x, w = _inputs(sum(sizes))
        mine = x[:, sum(sizes[:rank]): sum(sizes[: rank + 1])]
        for variant in ("crop_anchor", "mean_anchor"):
            loss, grad = _loss_and_grad(mine, w, variant)
            # what DDP does with the gradients, and what a logger does with the losses
            out[name, variant] = distributed.all_reduce_mean(loss), distributed.all_reduce_mean(grad)
    return out


def test_two_ranks_give_the_single_process_loss_and_gradients(tmp_path):
    results = _spawn(_ddp_losses, tmp_path)
    for name, sizes in BATCHES.items():
        x, w = _inputs(sum(sizes))
        for variant in ("crop_anchor", "mean_anchor"):
            loss, grad = _loss_and_grad(x, w, variant)
            for r in range(WORLD):
                got_loss, got_grad = results[r][name, variant]
                torch.testing.assert_close(got_loss, loss, rtol=1e-12, atol=1e-12, msg=f"{name} {variant}")
                torch.testing.assert_close(got_grad, grad, rtol=1e-10, atol=1e-12, msg=f"{name} {variant}")


def test_local_negatives_alone_do_not_match_the_full_batch():
    # guards the test above against a vacuous pass: half-batch losses differ from the full batch
    x, w = _inputs(6)
    full, _ = _loss_and_grad(x, w, "crop_anchor")
    halves = [_loss_and_grad(x[:, s], w, "crop_anchor")[0] for s in (slice(0, 3), slice(3, 6))]
    assert not torch.allclose(sum(halves) / 2, full)


def test_helpers_are_the_identity_at_world_size_1():
    x = torch.randn(4, 3, dtype=torch.float64)
    assert (distributed.rank(), distributed.world_size(), distributed.is_distributed()) == (0, 1, False)
    assert distributed.all_gather_with_grad(x) is x
    assert distributed.all_gather_varlen(x) == (x, [4])
    assert distributed.all_reduce_mean(x) is x
    z = F.normalize(torch.randn(N_CROPS, 4, D, dtype=torch.float64), dim=-1)
    g = distributed.gather_crops(z)
    assert g.crops is z and g.offset == 0 and g.weight == 1.0
    assert g.mcc_kwargs("crop_anchor") == {}


# ---------------------------------------------------------------- the other collectives


def _collectives(rank: int) -> dict:
    x = torch.arange(3 * (rank + 1), dtype=torch.float32).view(rank + 1, 3) + 100 * rank
    gathered, counts = distributed.all_gather_varlen(x)
    y = torch.full((rank + 2, 2), float(rank + 1), requires_grad=True)
    both = distributed.all_gather_with_grad(y)
    # rank r's loss weighs row k by (r + 1) * (k + 1): the sum over ranks reaches every rank's y
    weights = torch.arange(1, both.shape[0] + 1, dtype=torch.float32)[:, None]
    ((rank + 1) * weights * both).sum().backward()
    return {"gathered": gathered, "counts": counts, "with_grad": both.detach(), "grad": y.grad,
            "mean": distributed.all_reduce_mean(torch.tensor([float(rank)])),
            "ids": (distributed.rank(), distributed.world_size(), distributed.is_distributed())}


def test_collectives_on_two_ranks(tmp_path):
    results = _spawn(_collectives, tmp_path)
    rows = torch.cat([torch.arange(3.0).view(1, 3), torch.arange(6.0).view(2, 3) + 100])
    full = torch.cat([torch.full((2, 2), 1.0), torch.full((3, 2), 2.0)])
    weights = torch.arange(1, 6, dtype=torch.float32)[:, None].expand(5, 2)
    for r, res in enumerate(results):
        assert res["ids"] == (r, WORLD, True)
        assert res["counts"] == [1, 2]
        torch.testing.assert_close(res["gathered"], rows)
        torch.testing.assert_close(res["with_grad"], full)
        own = slice(0, 2) if r == 0 else slice(2, 5)
        torch.testing.assert_close(res["grad"], (1 + 2) * weights[own])  # sum over both ranks' losses
        torch.testing.assert_close(res["mean"], torch.tensor([0.5]))


# ---------------------------------------------------------------- distributed global dedup

SIZES, FEATURE_DIM, THRESHOLD, MAX_FRACTION = (7, 5), 6, 0.99, 0.5


def _union_features() -> tuple[torch.Tensor, torch.Tensor]:
    """[12, 6] features with near-duplicates inside and across ranks, and which entries are seen."""
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(sum(SIZES), FEATURE_DIM, generator=g)
    for dup, orig in ((8, 1), (11, 10), (4, 2), (5, 4), (9, 0)):  # 9 copies 0 but is unseen
        feats[dup] = feats[orig] + 1e-3 * torch.randn(FEATURE_DIM, generator=g)
    seen = torch.ones(sum(SIZES), dtype=torch.bool)
    seen[[6, 9]] = False
    return feats, seen


def _buffer(rank: int) -> ReplayBuffer:
    feats, seen = _union_features()
    lo, n = sum(SIZES[:rank]), SIZES[rank]
    buf = ReplayBuffer(capacity=8, image_shape=(3, 2, 2), feature_dim=FEATURE_DIM, max_batch=8)
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()
    buf.insert(images, [f"r{rank}_{i}" for i in range(n)], torch.zeros(n, dtype=torch.long))
    mine = torch.nonzero(seen[lo: lo + n]).squeeze(1)
    buf.update_features(mine, feats[lo: lo + n][mine])
    return buf


def _dedup_on_rank(rank: int) -> dict:
    buf = _buffer(rank)
    stats = global_dedup_round(buf, THRESHOLD, MAX_FRACTION)
    return {"stats": stats, "keys": list(buf.keys), "features": buf.features.clone()}


def _expected_removal() -> torch.Tensor:
    feats, seen = _union_features()
    ranks = torch.repeat_interleave(torch.arange(WORLD), torch.tensor(SIZES))
    return global_dedup(feats, seen, ranks, THRESHOLD, MAX_FRACTION)


def test_distributed_dedup_equals_the_pure_function_on_the_union(tmp_path):
    results = _spawn(_dedup_on_rank, tmp_path)
    removed = _expected_removal()
    assert removed.numel() >= 3 and (removed < SIZES[0]).any() and (removed >= SIZES[0]).any()
    assert 1 in removed and 0 not in removed  # 1's twin lives on rank 1; 0's twin is unseen
    per_rank = [int((removed < SIZES[0]).sum()), int((removed >= SIZES[0]).sum())]
    for r, res in enumerate(results):
        lo = sum(SIZES[:r])
        survivor = _buffer(r)  # the same buffer with the pure function's removal applied locally
        survivor.remove(removed[(removed >= lo) & (removed < lo + SIZES[r])] - lo)
        assert res["keys"] == survivor.keys
        torch.testing.assert_close(res["features"], survivor.features)
        assert res["stats"]["removed_per_rank"] == per_rank
        assert res["stats"]["removed_ids"] == [[i for i in removed.tolist() if i < SIZES[0]],
                                               [i - SIZES[0] for i in removed.tolist() if i >= SIZES[0]]]
        # padded to 7 rows per rank: 6 float32 features, a bool and an int64 uid per row, plus counts
        assert res["stats"]["bytes_exchanged"] == WORLD * 7 * (6 * 4 + 1 + 8) + WORLD * 8


def test_dedup_round_at_world_size_1_runs_the_pure_function():
    buf = _buffer(0)
    feats, seen = buf.features.clone(), buf.seen.clone()
    keys = list(buf.keys)
    stats = global_dedup_round(buf, 0.5, 0.3)
    removed = global_dedup(feats, seen, torch.zeros(len(keys), dtype=torch.long), 0.5, 0.3)
    assert removed.numel() > 0
    assert stats["removed_per_rank"] == [removed.numel()] and stats["bytes_exchanged"] == 0
    assert sorted(buf.keys) == sorted(k for i, k in enumerate(keys) if i not in set(removed.tolist()))


# ---------------------------------------------------------------- dedup near ties, unequal thread counts

PAIRS, FILLERS, TIE_DIM, PER_RANK = 12, 76, 128, 50


def _near_tie_union() -> tuple[torch.Tensor, torch.Tensor]:
    """[100, 128] rows: 12 pairs with cosines 0.95 + 1e-4 * (0..11), shuffled, among random rows;
    and the float64 greedy's removal at threshold 0.9506 (the lower row of the 6 closest pairs)."""
    g = torch.Generator().manual_seed(5)
    cos = 0.95 + 1e-4 * torch.randperm(PAIRS, generator=g).double()
    flat = torch.zeros(2 * PAIRS + FILLERS, TIE_DIM, dtype=torch.float64)
    k = torch.arange(PAIRS)
    flat[2 * k, 2 * k] = 1.0  # pair k spans dims 2k and 2k+1 ...
    flat[2 * k + 1, 2 * k], flat[2 * k + 1, 2 * k + 1] = cos, (1 - cos**2).sqrt()
    flat[2 * PAIRS:, 2 * PAIRS:] = torch.randn(FILLERS, TIE_DIM - 2 * PAIRS, generator=g, dtype=torch.float64)
    turn = torch.linalg.qr(torch.randn(TIE_DIM, TIE_DIM, generator=g, dtype=torch.float64)).Q
    place = torch.randperm(flat.shape[0], generator=g)  # ... then spread over both ranks
    feats = torch.empty_like(flat)
    feats[place] = flat @ turn  # a rotation keeps every cosine and makes every component count
    lower = place[: 2 * PAIRS].view(PAIRS, 2).min(dim=1).values
    return feats.float(), lower[torch.argsort(cos, descending=True)][: PAIRS // 2]


def _near_tie_dedup_on_rank(rank: int) -> dict:
    torch.set_num_threads(1 + rank)  # different BLAS blockings on the two ranks
    feats = _near_tie_union()[0][rank * PER_RANK: (rank + 1) * PER_RANK]
    buf = ReplayBuffer(capacity=PER_RANK, image_shape=(3, 1, 1), feature_dim=TIE_DIM, max_batch=PER_RANK)
    slots = buf.insert(torch.zeros(PER_RANK, 3, 1, 1, dtype=torch.uint8), [f"r{rank}_{i}" for i in range(PER_RANK)],
                       torch.zeros(PER_RANK, dtype=torch.long))
    buf.update_features(slots, feats)
    return global_dedup_round(buf, 0.95 + 5.5e-4, 0.5)


def test_distributed_dedup_of_near_ties_is_the_float64_greedy_on_every_rank(tmp_path):
    expected = _near_tie_union()[1]
    results = _spawn(_near_tie_dedup_on_rank, tmp_path)
    per_rank = [[i - r * PER_RANK for i in expected.tolist() if i // PER_RANK == r] for r in range(WORLD)]
    assert all(per_rank)  # both ranks remove entries
    assert results[0]["removed_ids"] == results[1]["removed_ids"]
    # removal order holds within each rank's list: the 1e-4 gaps are decided as float64 decides them
    assert results[0]["removed_ids"] == per_rank


# ---------------------------------------------------------------- seen classes: every rank's labels


class _NoLearner:
    """The loop's view of a learner that trains nothing (only the label bookkeeping is under test)."""

    device = torch.device("cpu")
    last_loss = None

    def observe(self, images, keys, labels):
        return []


def _seen_counts_on_rank(rank: int) -> dict:
    import numpy as np

    from streamssl.config import RunConfig
    from streamssl.train.loop import LoopState, _consume

    labels = [0, 0, 1] if rank == 0 else [2, 2]  # rank 1 alone sees class 2
    batch = {"image": np.zeros((len(labels), 8, 8, 3), np.uint8), "label": labels,
             "key": [f"r{rank}-{i}" for i in range(len(labels))]}
    state = LoopState()
    _consume(_NoLearner(), batch, state, logger=None, total=10, config=RunConfig(), world_size=WORLD)
    return state.class_seen_counts


def test_seen_classes_count_every_ranks_labels(tmp_path):
    results = _spawn(_seen_counts_on_rank, tmp_path)
    assert results[0] == results[1] == {0: 2, 1: 1, 2: 2}
