"""Replay schedules: the update count each schedule promises is the count the learner makes."""

import pytest
import torch

from streamssl import resolve
from streamssl.train.learner import Learner
from streamssl.train.replay import SCHEDULES, total_updates

pytestmark = pytest.mark.single_thread


def test_only_accv_trains_on_the_stream_rows():
    assert SCHEDULES["accv"].stream_rows and not SCHEDULES["minred"].stream_rows


@pytest.mark.parametrize("method, size", [("imai", 32), ("minred", 32), ("minred", 40)])
def test_total_updates_counts_what_the_learner_makes(method, size):
    config = resolve.load("pipelines/smoke.yaml", [f"method.name={method}", "method.crops=2" if method == "imai"
                                                   else "method.pred_dim=8", f"buffer.size={size}", "learner.k=2"])
    samples = 16 * 5 + 7  # five full stream batches and a short one
    learner = Learner(config, torch.device("cpu"), total_updates=total_updates(config, samples))
    g = torch.Generator().manual_seed(0)
    for i, start in enumerate(range(0, samples, 16)):
        b = min(16, samples - start)
        images = torch.randint(0, 256, (b, 3, 16, 16), generator=g, dtype=torch.uint8)
        learner.observe(images, [f"k{i}_{j}" for j in range(b)], torch.full((b,), i % 4))
    assert learner.batches == 6 and learner.update == learner.total_updates
    assert learner.update == (12 if method == "imai" else 2 * (6 - (size + 15) // 16 + 1))
