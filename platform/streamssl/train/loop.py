"""The per-worker online loop: stream batches in, updates + kNN evaluations + metrics out.

It takes any iterable of stream batches (dicts of numpy arrays with `image`, `key`, `label`,
`pos`, as the stream reader yields them), so a worker feeds it from its Ray Dataset iterator and a
test from a plain list, unchanged. The learner it trains is built by the caller; the loop's own
state (`LoopState`: the stream clock, position, evaluations) is what checkpoints save beside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from tqdm import tqdm

from streamssl import distributed
from streamssl.augment import to_model_input
from streamssl.compute import ComputeMeter
from streamssl.config import RunConfig
from streamssl.errors import TrainingError
from streamssl.export import write_backbone
from streamssl.streams.split import rank_split
from streamssl.train.evaluate import EvalData, class_histogram, eval_positions, evaluate_model
from streamssl.train.learner import Learner, UpdateResult
from streamssl.train.progress import ProgressWriter

log = logging.getLogger(__name__)


@dataclass
class LoopState:
    batches: int = 0  # stream batches this rank consumed: the clock of checkpoints, dedup rounds and resume
    samples_seen: int = 0  # stream positions all ranks consumed together
    last_knn: float = float("nan")
    last_linear: float = float("nan")
    class_seen_counts: dict = field(default_factory=dict)  # label -> stream samples seen so far
    evals: list = field(default_factory=list)  # (samples_seen, top1, validation top1 or NaN)
    skipped: list = field(default_factory=list)  # this rank's undecodable stream samples (train.skips)


def stream_end(config: RunConfig, total_samples: int, world_size: int = 1) -> int:
    """Samples the workers consume together: all of them with one worker; with several, the whole
    rounds of `world_size` stream batches (the rank split's rule, streams/split.py)."""
    return rank_split(total_samples, 0, world_size, config.learner.stream_batch).num_samples * world_size


def run_loop(config: RunConfig, learner: Learner, batches: Iterable[dict], total_samples: int,
             eval_data: EvalData | None, logger, *, state: LoopState | None = None, world_size: int = 1,
             progress: bool = True, hooks: Sequence[Callable] = (),
             should_stop: Callable[[], bool] | None = None) -> dict:
    """Train `learner` on the stream once, evaluating at the configured fractions; returns a summary.

    With several workers every rank runs this on its own slice of the stream (equal batch counts),
    `total_samples` and sample counts are global, and only the rank given `eval_data` evaluates.
    Evaluation points past the last sample the workers consume move to it, so the run's last
    evaluation (with the end-of-run linear probe) is always at its last sample.
    `state` is updated in place (pass a restored one to resume from a checkpoint; `batches` then
    yields only the stream batches after `state.batches`). `hooks` run after every stream batch as hook(learner, state)
    (checkpoints, global dedup). `should_stop` is asked after every stream batch (after the
    hooks); when it says so before the end, the loop returns with `interrupted`.

    Raises:
        TrainingError: an update failed (non-finite loss or features); names the stream position.
    """
    end = stream_end(config, total_samples, world_size)
    state = state if state is not None else LoopState()
    positions = sorted({min(p, end) for p in eval_positions(config.eval.points, total_samples)})
    points = [p for p in positions if p > state.samples_seen or (p == 0 and not state.evals)]
    bar = tqdm(total=total_samples, initial=state.samples_seen, unit="img", disable=not progress,
               desc=config.method_name)
    evaluate = partial(_evaluate_due, learner, state, points, eval_data, logger, config, total_samples)
    # rank 0 (the one logging metrics) tells a driver in another process where the stream is
    writer = ProgressWriter(logger.run_dir) if getattr(logger, "run_dir", None) else None
    evaluate()
    start, clock, interrupted, meter = time.perf_counter(), _SteadyClock(), False, ComputeMeter()
    for batch in _timed(batches, meter):
        updates = learner.update
        _consume(learner, batch, state, logger, total_samples, config, world_size)
        meter.record(batch.get("rows", len(batch["label"])) * world_size, learner.update - updates)
        clock.tick(learner.update)
        evaluate()
        for hook in hooks:
            hook(learner, state)
        bar.update(batch.get("rows", len(batch["label"])) * world_size)
        status = {"loss": f"{learner.last_loss:.3f}" if learner.update else "-",
                  "buf": f"{len(learner.buffer)}/{learner.buffer.capacity}", "knn": f"{state.last_knn:.3f}"}
        bar.set_postfix(pos=state.samples_seen, **status)
        if writer is not None:
            writer.write(samples_seen=state.samples_seen, **status)
        if should_stop is not None and should_stop() and state.samples_seen < end:
            interrupted = True
            break
    last_eval = state.evals[-1][0] if state.evals else None
    if points and not interrupted and last_eval != state.samples_seen:  # the stream ended early
        points[:] = [state.samples_seen]  # its end point is unreachable: evaluate where it ended
        evaluate()
    bar.close()
    if writer is not None:
        writer.write(force=True, samples_seen=state.samples_seen, knn=f"{state.last_knn:.3f}")
    meter.flops_per_update = learner.flops_per_update
    return {"updates": learner.update, "samples_seen": state.samples_seen, "final_knn": state.last_knn,
            "final_linear": state.last_linear, "interrupted": interrupted,
            "train_seconds": time.perf_counter() - start, **clock.summary(),
            "compute": meter.summary(learner.device)}


def _timed(batches: Iterable[dict], meter: ComputeMeter):
    """The stream batches, the time spent waiting for each one counted as data wait."""
    source = iter(batches)
    while True:
        with meter.waiting():
            batch = next(source, None)
        if batch is None:
            return
        yield batch


class _SteadyClock:
    """Updates and seconds from the end of the first stream batch to the end of the last one.

    Start-up (the first read, the first update's allocations) and the evaluation after the last
    batch fall outside the window, so `steady_updates / steady_seconds` is the sustained rate that
    benchmarks compare between the in-process and the Ray Train paths. The epoch timestamps let a
    caller split its wall time into start-up, steady training and teardown.
    """

    def __init__(self) -> None:
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] | None = None
        self.started_at = time.time()

    def tick(self, update: int) -> None:
        now = (time.perf_counter(), update)
        if self.first is None:
            self.first, self.first_at = now, time.time()
        self.last, self.last_at = now, time.time()

    def summary(self) -> dict:
        if self.first is None:
            return {}
        return {"steady_updates": self.last[1] - self.first[1], "steady_seconds": self.last[0] - self.first[0],
                "loop_started_at": self.started_at, "first_batch_at": self.first_at, "last_batch_at": self.last_at}


def _consume(learner: Learner, batch: dict, state: LoopState, logger, total: int, config: RunConfig,
             world_size: int) -> None:
    images = to_model_input(batch["image"], config.model.image_size).to(learner.device)
    labels = torch.from_numpy(np.array(batch["label"], dtype=np.int64))  # a copy: Ray views are read-only
    keys = [str(k) for k in batch["key"]]
    try:
        results = learner.observe(images, keys, labels)
    except TrainingError as err:
        raise TrainingError(f"{err}, stream position {state.samples_seen}") from err
    state.batches += 1
    # the ranks consume W stream batches per step; "rows" counts samples dropped as undecodable too
    state.samples_seen += batch.get("rows", len(labels)) * world_size
    # every rank counts every rank's labels: seen-class accuracy needs the whole stream's classes
    shown = labels if world_size == 1 else distributed.all_gather_varlen(labels)[0]
    for c, n in zip(*np.unique(shown.numpy(), return_counts=True)):
        state.class_seen_counts[int(c)] = state.class_seen_counts.get(int(c), 0) + int(n)
    for result in results:
        _log_update(logger, result, state.samples_seen, total)
    if results:
        learner.last_loss = results[-1].loss


def _log_update(logger, r: UpdateResult, seen: int, total: int) -> None:
    at = {"samples_seen": seen, "progress": seen / max(total, 1), "update": r.update}
    logger.log("train/loss", r.loss, **at)
    logger.log("train/lr", r.lr, **at)
    for name, value in r.parts.items():
        logger.log(f"train/loss_{name}", value, **at)
    if r.grad_cosine is not None:
        logger.log("train/grad_cosine", r.grad_cosine, **at)


def _evaluate_due(learner: Learner, state: LoopState, points: list[int], data: EvalData | None, logger,
                  config: RunConfig, total: int) -> None:
    while points and state.samples_seen >= points[0]:
        points.pop(0)
        if data is None:  # not the evaluating rank
            continue
        mode = "end" if config.eval.linear is True else config.eval.linear
        linear = mode == "points" or (mode == "end" and not points)
        result = evaluate_model(learner.method, data, config, learner.device, linear=linear)
        at = {"samples_seen": state.samples_seen, "progress": state.samples_seen / max(total, 1),
              "update": learner.update}
        _log_classifier(logger, "knn", result["knn"], result["knn_protocol"], at)
        val_top1 = _log_val_and_health(logger, result, at)
        if linear:
            _log_classifier(logger, "linear", result["linear"], result["linear_protocol"], at)
            state.last_linear = result["linear"]["top1"]
        logger.log_many("buffer/class_count", class_histogram(learner.buffer.labels.cpu().numpy(),
                                                              data.num_classes), **at)
        for c, n in sorted(state.class_seen_counts.items()):
            logger.log("stream/classes_seen", float(n), class_id=c, **at)
        state.last_knn = result["knn"]["top1"]
        if config.eval.snapshots and getattr(logger, "run_dir", None) is not None:
            write_backbone(logger.run_dir, learner.method, at=state.samples_seen)
        state.evals.append((state.samples_seen, result["knn"]["top1"], val_top1))
        log.debug("kNN %.4f (validation %.4f) at %d samples", result["knn"]["top1"], val_top1, state.samples_seen)


def _log_classifier(logger, name: str, result: dict, protocol: str, at: dict) -> None:
    logger.log(f"eval/{name}_top1", result["top1"], protocol=protocol, **at)
    logger.log_many(f"eval/{name}_class_acc", result["per_class"], protocol=protocol, **at)


def _log_val_and_health(logger, result: dict, at: dict) -> float:
    """Validation kNN top-1 (per-class rows would double a many-class set's rows) and the health
    metrics; returns the validation top-1, NaN without a validation subset."""
    val_top1 = result["val_knn"]["top1"] if "val_knn" in result else float("nan")
    if "val_knn" in result:
        logger.log("eval/val_knn_top1", val_top1, protocol=result["val_knn_protocol"], **at)
    for name, value in result["health"].items():
        logger.log(f"eval/{name}", value, protocol=result["health_protocol"][name], **at)
    return val_top1
