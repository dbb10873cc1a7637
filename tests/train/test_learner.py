import pytest
import torch

from streamssl import resolve
from streamssl.errors import TrainingError
from streamssl.train.learner import Learner


def make(overrides):
    config = resolve.load("pipelines/smoke.yaml", overrides)
    return config, Learner(config, torch.device("cpu"), total_updates=100)


def batch(i, b=16, size=16):
    g = torch.Generator().manual_seed(i)
    images = torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)
    return images, [f"k{i}_{j}" for j in range(b)], torch.full((b,), i % 4)


def test_accv_schedule_trains_at_once_then_replays_b_from_the_buffer():
    config, learner = make(["method.crops=2", "buffer.size=32", "learner.k=2"])
    sizes = [[r.batch_size for r in learner.observe(*batch(i))] for i in range(4)]
    assert sizes[0] == [16, 16]  # buffer holds 16 < 2B: incoming only
    assert all(s == [32, 32] for s in sizes[1:])  # B incoming + B replayed
    assert len(learner.buffer) == 32 and learner.update == 8
    assert learner.buffer.seen.all()


def test_minred_schedule_waits_for_a_full_buffer():
    config, learner = make(["method.name=minred", "buffer.size=32", "learner.k=2"])
    assert learner.observe(*batch(0)) == []
    results = learner.observe(*batch(1))
    assert [r.batch_size for r in results] == [16, 16] and len(learner.buffer) == 32
    learner.observe(*batch(2))
    assert len(learner.buffer) == 32  # resized before the updates


def test_grad_cosine_is_logged_after_the_first_update():
    _, learner = make(["method.crops=2", "learner.k=2"])
    results = learner.observe(*batch(0))
    assert results[0].grad_cosine is None and -1 <= results[1].grad_cosine <= 1


def test_non_finite_loss_stops_with_the_update_number():
    _, learner = make(["method.crops=2", "learner.lr=1e30", "learner.lars=false"])
    with pytest.raises(TrainingError, match="update"):
        for i in range(6):
            learner.observe(*batch(i))
