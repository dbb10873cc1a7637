"""Stream batches that lost undecodable samples: shorter or empty, they still make K updates, so
DDP ranks stay in step (2 gloo processes), and minred starts training on every rank together."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from streamssl import resolve
from streamssl.train.learner import Learner

SIZES = {0: [16, 16, 16, 16], 1: [16, 5, 0, 16]}  # rank 1 lost 11 samples, then a whole batch


def _batch(rank: int, step: int, b: int):
    g = torch.Generator().manual_seed(100 * rank + step)
    images = torch.randint(0, 256, (b, 3, 16, 16), generator=g, dtype=torch.uint8)
    return images, [f"r{rank}s{step}i{j}" for j in range(b)], torch.full((b,), step % 4)


def _learner(method: str) -> Learner:
    overrides = [f"method.name={method}", "method.crops=2", "buffer.size=32", "learner.k=2"]
    if method == "minred":
        overrides = overrides[:1] + overrides[2:]
    return Learner(resolve.load("pipelines/smoke.yaml", overrides), torch.device("cpu"), total_updates=100)


def _observe_all(rank: int, method: str, sizes: list[int]) -> list[list[float]]:
    learner = _learner(method)
    return [[r.loss for r in learner.observe(*_batch(rank, t, b))] for t, b in enumerate(sizes)]


def _entry(rank: int, method: str, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=2,
                            timeout=timedelta(seconds=120))  # a desync fails instead of hanging
    try:
        torch.save(_observe_all(rank, method, SIZES[rank]), f"{tmp}/out{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("method", ["imai", "minred"])
def test_short_and_empty_batches_keep_ranks_in_step(method, tmp_path):
    mp.spawn(_entry, args=(method, str(tmp_path)), nprocs=2, join=True)
    losses = [torch.load(tmp_path / f"out{r}.pt") for r in range(2)]
    counts = [[len(step) for step in rank] for rank in losses]
    expected = [2, 2, 2, 2] if method == "imai" else [0, 2, 2, 2]  # minred: full after 2 batches of B
    assert counts == [expected, expected]
    assert all(torch.isfinite(torch.tensor(loss)) for rank in losses for step in rank for loss in step)


def test_one_process_skips_an_empty_first_batch_and_trains_on_the_buffer_later(one_thread):
    learner = _learner("imai")
    assert learner.observe(*_batch(0, 0, 0)) == []  # nothing decoded, nothing held: no update
    assert [r.batch_size for r in learner.observe(*_batch(0, 1, 3))] == [3, 3]
    assert [r.batch_size for r in learner.observe(*_batch(0, 2, 0))] == [3, 3]  # the buffer stands in
    assert learner.buffer.steps == 3 and learner.update == 4
