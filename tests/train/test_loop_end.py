"""The loop's end: the last evaluation (with the linear probe) is at the last sample consumed, and a
stop request ends the loop between stream batches. Plain loop, no Ray."""

import math

import numpy as np
import torch

from streamssl import resolve
from streamssl.evaluation import NullLogger
from streamssl.train.evaluate import EvalData
from streamssl.train.learner import Learner
from streamssl.train.loop import LoopState, run_loop, stream_end
from streamssl.train.replay import total_updates


def smoke(*overrides):
    return resolve.load("pipelines/smoke.yaml", ["method.crops=2", "learner.threads=1", "eval.linear_epochs=2",
                                             "eval.knn_k=5", *overrides])


def learner_for(config, total, world_size=1):
    """The learner a worker builds for its share of the stream."""
    share = stream_end(config, total, world_size) // world_size
    return Learner(config, torch.device("cpu"), total_updates(config, share))


def eval_data(n=24, classes=4, size=16):
    g = torch.Generator().manual_seed(0)
    images = lambda: torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)  # noqa: E731
    labels = torch.arange(n) % classes
    return EvalData(images(), labels, images(), labels.clone(), classes)


def batches(sizes, size=16):
    rng = np.random.default_rng(0)
    for i, b in enumerate(sizes):
        yield {"image": rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8), "label": np.arange(b) % 4,
               "key": np.array([f"k{i}_{j}" for j in range(b)], dtype=object), "pos": np.arange(b)}


def test_with_workers_the_last_evaluation_and_probe_are_at_the_last_sample_consumed(one_thread):
    # 2 workers x 3 batches of 16 consume 96 of 100 samples; eval.points put a point at 96 and one at 100
    config = smoke("eval.points=[0,0.96,1]")
    state = LoopState()
    summary = run_loop(config, learner_for(config, 100, 2), batches([16, 16, 16]), 100, eval_data(), NullLogger(),
                       world_size=2, progress=False, state=state)
    assert summary["samples_seen"] == 96 == stream_end(config, 100, world_size=2)
    assert [e[0] for e in state.evals] == [0, 96]  # the 100% point moved to the last sample, evaluated once
    assert math.isfinite(summary["final_linear"])  # the end-of-run probe ran (it was silently NaN)


def test_one_worker_trains_on_the_short_last_batch_and_counts_its_updates(one_thread):
    config = smoke("eval.points=[0,1]", "learner.k=2", "learner.lr_schedule=cosine")
    assert stream_end(config, 60) == 60 and total_updates(config, 60) == 4 * 2  # 16 + 16 + 16 + 12
    state, learner = LoopState(), learner_for(config, 60)
    summary = run_loop(config, learner, batches([16, 16, 16, 12]), 60, eval_data(), NullLogger(), progress=False,
                       state=state)
    assert summary["samples_seen"] == 60 and summary["updates"] == 8 == learner.total_updates
    assert [e[0] for e in state.evals] == [0, 60] and math.isfinite(summary["final_linear"])
    assert learner.buffer.steps == 4 and "k3_11" in learner.buffer.keys  # the short batch reached the buffer


def test_a_stop_request_ends_the_loop_after_the_current_batch_without_a_final_evaluation(one_thread):
    config = smoke("eval.points=[0,1]")
    asked = []

    def should_stop():
        asked.append(True)
        return len(asked) >= 2  # requested while the second batch trained

    state = LoopState()
    summary = run_loop(config, learner_for(config, 128), batches([16] * 8), 128, eval_data(), NullLogger(),
                       progress=False, state=state, should_stop=should_stop)
    assert summary["interrupted"] and summary["samples_seen"] == 32
    assert [e[0] for e in state.evals] == [0] and math.isnan(summary["final_linear"])


def test_a_stop_request_after_the_last_batch_is_a_completed_run(one_thread):
    config = smoke("eval.points=[0,1]")
    asked = []
    summary = run_loop(config, learner_for(config, 32), batches([16, 16]), 32, eval_data(), NullLogger(),
                       progress=False, should_stop=lambda: asked.append(1) or len(asked) == 2)  # after the last
    assert not summary["interrupted"] and summary["samples_seen"] == 32 and math.isfinite(summary["final_linear"])
