"""One worker's whole session: restore, stream, learn, checkpoint, dedup, write outputs.

The same function runs in-process (one worker) and inside each Ray Train worker; what differs is
passed in: the rank and world size, and `sink`, which stores a checkpoint (a folder of rank files
in the run dir in-process; `ray.train.report` inside Ray Train).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from streamssl import fsio
from streamssl.config import RunConfig
from streamssl.train.checkpoint import load_checkpoint, save_checkpoint
from streamssl.train.learner import Learner
from streamssl.train.loop import LoopState, run_loop, stream_end
from streamssl.train.replay import total_updates

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    rank: int
    world: int
    device: torch.device
    run_dir: Path
    dataset_dir: Path
    stream_dir: Path
    total: int  # samples in the whole stream
    progress: bool = True
    resume_dir: Path | None = None  # a complete checkpoint to start from
    tune: bool = False  # under Ray Tune: report kNN at every eval point (tune_report_hook)
    read_cpus: float | None = None  # logical CPUs per stream read task (Ray Train: a fraction)
    read_concurrency: int | None = None  # read tasks at once (None: as many as CPUs allow)


def run_worker(config: RunConfig, ctx: WorkerContext, sink: Callable[[Callable[[Path], None], dict], None]) -> dict:
    """Run this rank's part of the stream; returns rank 0's summary (other ranks: their own)."""
    from streamssl.evaluation import MetricsLogger, NullLogger
    from streamssl.streams import read_stream
    from streamssl.train.evaluate import load_eval_data
    from streamssl.train.skips import StreamSkips, run_skips

    end = stream_end(config, ctx.total, ctx.world)
    learner = Learner(config, ctx.device, total_updates(config, end // ctx.world), rank=ctx.rank)
    state = LoopState()
    if ctx.resume_dir is not None:
        state = LoopState(**load_checkpoint(ctx.resume_dir, ctx.rank, learner, world_size=ctx.world))
        log.info("rank %d resumes at stream position %d", ctx.rank, state.samples_seen)
    logger = MetricsLogger(ctx.run_dir, None) if ctx.rank == 0 else NullLogger()
    if ctx.rank == 0 and ctx.resume_dir is not None:
        logger.resume(_metrics_up_to(ctx.run_dir, state.samples_seen))
    eval_data = load_eval_data(config, ctx.dataset_dir) if ctx.rank == 0 else None
    b = config.learner.stream_batch
    stream = read_stream(ctx.stream_dir, rank=ctx.rank, world_size=ctx.world, block=b, size=config.model.read_size,
                         num_cpus=ctx.read_cpus, concurrency=ctx.read_concurrency)
    reader = iter(stream.iter_batches(batch_size=b, batch_format="numpy"))  # a generator: closed below
    batches = itertools.islice(reader, learner.buffer.steps, None)
    batches = StreamSkips(state.skipped, ctx.stream_dir, ctx.dataset_dir, config.dataset.strict).filter(batches)
    save = checkpoint_saver(config, ctx, logger, sink)
    hooks = [dedup_hook(config, logger), checkpoint_hook(config, save)]
    if ctx.tune:
        hooks.append(tune_report_hook(config, ctx, logger))
    try:  # metrics logged so far reach the disk however the loop ends
        summary = run_loop(config, batches, ctx.total, eval_data, logger, ctx.device, rank=ctx.rank,
                           world_size=ctx.world, progress=ctx.rank == 0 and ctx.progress, hooks=hooks,
                           learner=learner, state=state, should_stop=stop_check(ctx))
        learner = summary.pop("learner")
        summary.update(run_skips(state.skipped, eval_data, summary["samples_seen"], ctx.dataset_dir, ctx.rank))
        if summary["interrupted"] and config.checkpoint.every and learner.buffer.steps % config.checkpoint.every:
            save(learner, state)  # stopped between checkpoints: one more, where it stopped
    finally:
        logger.close()
        reader.close()  # a stopped run shuts its stream reader down here, not in a later garbage collection
    _write_outputs(learner, ctx)
    return summary


def stop_check(ctx: WorkerContext) -> Callable[[], bool]:
    """Whether a stop was requested (RUN_DIR/STOP, see train/lifecycle.py), agreed by every rank.

    The ranks all-reduce their answers after every stream batch, so all of them stop after the
    same batch even when they see the file at different moments (their collectives stay matched).
    """
    from streamssl import distributed
    from streamssl.train.lifecycle import stop_requested

    def check() -> bool:
        mine = torch.tensor([1.0 if stop_requested(ctx.run_dir) else 0.0], device=ctx.device)
        return bool(distributed.all_reduce_mean(mine).item() > 0) if ctx.world > 1 else bool(mine.item())

    return check


def _metrics_up_to(run_dir: Path, samples_seen: int) -> pd.DataFrame | None:
    path = run_dir / "metrics.parquet"
    if not path.exists():
        return None
    frame = pd.read_parquet(path)
    return frame[frame.samples_seen <= samples_seen].reset_index(drop=True)


def _write_outputs(learner: Learner, ctx: WorkerContext) -> None:
    keys = list(learner.buffer.keys)
    fsio.write_text(ctx.run_dir / f"buffer_keys.rank{ctx.rank}.json", json.dumps(keys))
    if ctx.rank == 0:
        with fsio.atomic_path(ctx.run_dir / "model.pt") as tmp:
            torch.save({"method": learner.method.state_dict()}, tmp)


def dedup_hook(config: RunConfig, logger) -> Callable:
    """Every `dedup.every` stream batches, all workers deduplicate their buffers together."""
    from streamssl.train.dedup_round import global_dedup_round

    def hook(learner: Learner, state: LoopState) -> None:
        steps = learner.buffer.steps  # equal on every rank, and restored on resume
        if not config.dedup.every or steps % config.dedup.every:
            return
        stats = global_dedup_round(learner.buffer, config.dedup.threshold, config.dedup.max_fraction)
        at = {"samples_seen": state.samples_seen, "progress": 0.0, "update": learner.update}
        logger.log_many("dedup/removed", stats["removed_per_rank"], **at)
        logger.log("dedup/bytes", float(stats["bytes_exchanged"]), **at)
        logger.log("dedup/seconds", stats["seconds"], **at)

    return hook


def checkpoint_saver(config: RunConfig, ctx: WorkerContext, logger, sink) -> Callable:
    """save(learner, state): every rank saves its part of a checkpoint and hands it to `sink`."""

    def save(learner: Learner, state: LoopState) -> None:
        logger.flush()  # metrics on disk are never older than the checkpoint
        loop_state = dataclasses.asdict(state)

        def write(directory: Path) -> None:
            save_checkpoint(directory, ctx.rank, learner, loop_state, world_size=ctx.world)

        sink(write, {"samples_seen": state.samples_seen, "update": learner.update, "knn": state.last_knn})

    return save


def checkpoint_hook(config: RunConfig, save: Callable) -> Callable:
    """Every `checkpoint.every` stream batches, a checkpoint (`checkpoint_saver`)."""

    def hook(learner: Learner, state: LoopState) -> None:
        if config.checkpoint.every and learner.buffer.steps % config.checkpoint.every == 0:
            save(learner, state)

    return hook


def tune_report_hook(config: RunConfig, ctx: WorkerContext, logger) -> Callable:
    """Under Ray Tune, every rank reports once per eval point reached before the end.

    `ray.train.report` is a barrier, so every rank reports at the same stream positions (known to
    all from the config); only rank 0's metrics reach Tune (TuneReportCallback), and only rank 0
    evaluated, so the others send placeholders. Metrics are flushed first so that a trial the
    scheduler stops here keeps its curve on disk. The end of the stream is reported by the trial
    driver once the run's outputs are written, so a stop decision there cannot cut them short.
    """
    import ray.train

    from streamssl.train.evaluate import eval_positions

    pending = [p for p in eval_positions(config.eval.points, ctx.total) if p < ctx.total]

    def hook(learner: Learner, state: LoopState) -> None:
        due = [p for p in pending if p <= state.samples_seen]
        if not due:
            return
        del pending[:len(due)]
        logger.flush()
        ray.train.report(eval_metrics(state.evals if ctx.rank == 0 else [], ctx.total, learner.update))

    return hook


def eval_metrics(evals: list, total: int, updates: int) -> dict:
    """Tune metrics after the latest eval: validation and test kNN, their running AUC over
    progress, and the position. `val_knn*` (train-split images outside the kNN memory) is what a
    search selects on; `knn*` score the test subset and are reported, not selected on.

    Args:
        evals: (samples_seen, top1, val_top1) triples in stream order (LoopState.evals; pairs from
            older checkpoints have no validation value); empty on ranks > 0.
    """
    from streamssl.evaluation.metrics import area_under_curve

    nan = float("nan")
    if not evals:
        return {"knn": nan, "knn_auc": nan, "val_knn": nan, "val_knn_auc": nan, "progress": 0.0, "samples_seen": 0,
                "updates": updates}
    seen = [e[0] for e in evals]
    progress = [s / max(total, 1) for s in seen]
    out = {"progress": round(progress[-1], 6), "samples_seen": seen[-1], "updates": updates}
    for name, column in (("knn", 1), ("val_knn", 2)):
        values = [e[column] if len(e) > column else nan for e in evals]
        out[name] = values[-1]
        out[f"{name}_auc"] = area_under_curve(progress, values) if len(evals) > 1 else values[0]
    return out


def local_sink(run_dir: Path, keep: int) -> Callable:
    """In-process checkpoints: RUN_DIR/checkpoints/batch-NNNNNNNN, the newest `keep` kept."""
    root = run_dir / "checkpoints"

    def sink(save: Callable[[Path], None], metrics: dict) -> None:
        with tempfile.TemporaryDirectory(dir=run_dir) as tmp:
            save(Path(tmp))
            target = root / f"pos-{metrics['samples_seen']:012d}"
            target.parent.mkdir(parents=True, exist_ok=True)
            Path(tmp).rename(target)  # appears whole or not at all
            Path(tmp).mkdir()  # TemporaryDirectory cleans up a folder at its path
        for old in sorted(root.glob("pos-*"))[:-keep]:
            _remove_tree(old)

    return sink


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
