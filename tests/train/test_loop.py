"""`run_loop` on a plain list of stream batches in the reader's format: no Ray, no files."""

import math

import numpy as np
import pytest
import torch

from streamssl import resolve as cfg
from streamssl.errors import TrainingError
from streamssl.train.evaluate import EvalData
from streamssl.train.learner import Learner
from streamssl.train.loop import LoopState, run_loop
from streamssl.train.replay import total_updates


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


class Rows:
    """A logger that keeps (metric, value, samples_seen, update) rows."""

    def __init__(self):
        self.rows = []

    def log(self, metric, value, **at):
        self.rows.append((metric, value, at["samples_seen"], at["update"]))

    def log_many(self, metric, values, **at):
        self.rows.append((metric, list(values), at["samples_seen"], at["update"]))

    def where(self, metric):
        return [row[1:] for row in self.rows if row[0] == metric]


def stream(count, b=16, size=16):
    """What the stream reader yields: (b, H, W, 3) uint8 images, keys, labels, positions, skip reasons."""
    rng = np.random.default_rng(7)
    return [{"image": rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8), "label": np.arange(b) % 4,
             "key": np.array([f"s{i}_{j}" for j in range(b)], dtype=object), "pos": np.arange(i * b, (i + 1) * b),
             "skip": np.array([""] * b, dtype=object)} for i in range(count)]


def eval_data(n=24, size=16):
    g = torch.Generator().manual_seed(0)
    images = lambda: torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)  # noqa: E731
    labels = torch.arange(n) % 4
    return EvalData(images(), labels, images(), labels.clone(), 4)


def test_the_loop_trains_logs_and_keeps_the_stream_clock():
    config = cfg.load("pipelines/smoke.yaml", ["method.crops=2", "learner.k=2", "eval.points=[0,0.5,1]",
                                               "eval.linear=off"])
    learner = Learner(config, torch.device("cpu"), total_updates(config, 64))
    state, logger, seen_by_hook = LoopState(), Rows(), []
    summary = run_loop(config, learner, stream(4), 64, eval_data(), logger, state=state, progress=False,
                       hooks=[lambda lrn, st: seen_by_hook.append((st.batches, st.samples_seen, lrn.update))])
    assert summary["updates"] == learner.update == 4 * 2 and "learner" not in summary
    assert summary["samples_seen"] == state.samples_seen == 64 and state.batches == 4
    assert seen_by_hook == [(1, 16, 2), (2, 32, 4), (3, 48, 6), (4, 64, 8)]  # after every stream batch
    losses = logger.where("train/loss")
    assert [update for _, _, update in losses] == list(range(1, 9)) and all(math.isfinite(v) for v, *_ in losses)
    assert [seen for _, seen, _ in logger.where("eval/knn_top1")] == [0, 32, 64]
    assert [e[0] for e in state.evals] == [0, 32, 64] and summary["final_knn"] == state.evals[-1][1]
    assert state.class_seen_counts == {c: 16 for c in range(4)}


def test_a_resumed_state_continues_the_clock_where_it_stopped():
    config = cfg.load("pipelines/smoke.yaml", ["method.crops=2", "learner.k=1", "eval.points=[0,1]"])
    learner = Learner(config, torch.device("cpu"), total_updates(config, 64))
    state = LoopState(batches=2, samples_seen=32, evals=[(0, 0.25, math.nan)])
    summary = run_loop(config, learner, stream(4)[2:], 64, None, Rows(), state=state, progress=False)
    assert state.batches == 4 and summary["samples_seen"] == 64 and summary["updates"] == 2


def test_a_failed_update_names_the_stream_position():
    config = cfg.load("pipelines/smoke.yaml", ["method.crops=2", "learner.lr=1e30", "learner.lars=false"])
    learner = Learner(config, torch.device("cpu"), total_updates(config, 128))
    state = LoopState()
    with pytest.raises(TrainingError, match=r"update \d+.*stream position \d+"):
        run_loop(config, learner, stream(8), 128, None, Rows(), state=state, progress=False)
    assert learner.update >= 1  # the caller still holds the learner that failed, to save its state
