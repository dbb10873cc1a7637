"""Replay schedules: how one stream batch becomes K updates, and how many updates a run makes.

  accv   - Imai et al. 2024: train from the first batch; each update = the B incoming + B drawn
           from the rest of the buffer once it holds 2B; resize after the K updates. With
           `learner.replay: false` every update uses the incoming batch alone and the batch leaves
           the buffer after its K updates, so no memory is kept (pure online training).
  minred - Purushwalkam et al. 2022: no training until the buffer is full; resize before the K
           updates; every update draws B samples from the whole buffer.

`SCHEDULES` (the `learner.schedule` values) is the only place that tells them apart; the learner,
validation and the loop ask it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from streamssl.config import RunConfig
    from streamssl.train.learner import Learner, UpdateResult


def _accv(learner: Learner, new: torch.Tensor) -> list[UpdateResult]:
    buffer, lc = learner.buffer, learner.config.learner
    if len(buffer) == 0:
        return learner.nothing_to_train_on()
    if new.numel() == 0:  # no image of this stream batch decoded: B buffer entries stand in for it
        new = buffer.sample(lc.stream_batch, learner.buffer_gen)
    learner.method.begin_batch(buffer.images[new], learner.aug_gen)
    results = [learner.train_on(_incoming_and_replayed(learner, new)) for _ in range(lc.k)]
    if lc.replay:
        learner.resize()
    else:
        buffer.remove(new)  # the buffer only carried the batch through its updates
    return results


def _incoming_and_replayed(learner: Learner, new: torch.Tensor) -> torch.Tensor:
    b = new.numel()
    replay = torch.empty(0, dtype=torch.long)
    if learner.config.learner.replay and len(learner.buffer) >= 2 * b:
        replay = learner.draw_replay(b, exclude=new)
    return torch.cat([new.cpu(), replay.cpu()])


def _minred(learner: Learner, new: torch.Tensor) -> list[UpdateResult]:
    del new  # every update draws from the whole buffer
    lc, buffer = learner.config.learner, learner.buffer
    # full by the count of stream batches, equal on every rank even when a batch came short
    if learner.batches <= _buffer_fill_batches(learner.config):
        return []
    if len(buffer) == 0:
        return learner.nothing_to_train_on()
    learner.resize()
    return [learner.train_on(learner.draw_replay(lc.stream_batch)) for _ in range(lc.k)]


def _buffer_fill_batches(config: RunConfig) -> int:
    """Stream batches before the one that fills the buffer (minred trains from that one on)."""
    return math.ceil(config.buffer.size / config.learner.stream_batch) - 1


@dataclass(frozen=True)
class Schedule:
    observe: Callable[[Learner, torch.Tensor], list[UpdateResult]]  # (learner, new slots) -> the updates
    stream_rows: bool  # every update starts with the incoming batch (replay can be off; SCALE's views)
    idle_batches: Callable[[RunConfig], int]  # stream batches at the start that make no update


SCHEDULES: dict[str, Schedule] = {
    "accv": Schedule(_accv, stream_rows=True, idle_batches=lambda config: 0),
    "minred": Schedule(_minred, stream_rows=False, idle_batches=_buffer_fill_batches),
}


def total_updates(config: RunConfig, samples_per_rank: int) -> int:
    """Updates a worker makes over its share of the stream: K per stream batch, the last short one
    included, less the schedule's idle batches."""
    batches = math.ceil(samples_per_rank / config.learner.stream_batch)
    batches -= SCHEDULES[config.learner.schedule].idle_batches(config)
    return max(batches, 0) * config.learner.k
