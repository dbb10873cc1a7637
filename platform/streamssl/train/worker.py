"""One worker's whole session: restore, stream, learn, checkpoint, dedup, write outputs.

The same function runs in-process (one worker) and inside each Ray Train worker, with the same
`WorkerContext`; what differs is passed in by the caller: `sink`, which stores a checkpoint (a
folder of rank files in the run dir in-process; `ray.train.report` inside Ray Train), and under
Ray Tune `report`, which hands the search its metrics. This module imports no Ray.
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
from streamssl.errors import TrainingError
from streamssl.export import write_backbone
from streamssl.train.checkpoint import load_checkpoint, save_checkpoint
from streamssl.train.learner import Learner
from streamssl.train.loop import LoopState, run_loop, stream_end
from streamssl.train.replay import total_updates

log = logging.getLogger(__name__)

Sink = Callable[[Callable[[Path], None], dict], None]  # sink(write, metrics): write(folder) saves the rank files
Report = Callable[[dict], None]  # hands Ray Tune a dict of metrics; a barrier across ranks


@dataclass(frozen=True)
class WorkerContext:
    """Where a run's workers read and write, built once by the pipeline for both paths.

    Plain and picklable: Ray Train ships it to every worker, which sets its own `rank` (and
    `resume_dir`, after a worker failure) with `dataclasses.replace`.
    """

    run_dir: str  # a local path or a URI (streamssl.fsio), as are the other paths here
    dataset_dir: str
    stream_dir: str
    total: int  # samples in the whole stream
    world: int = 1
    rank: int = 0
    threads: int = 1  # torch intra-op threads of this worker
    use_gpu: bool = False
    progress: bool = True  # this worker draws a progress bar (rank 0 only)
    resume_dir: str | None = None  # a complete checkpoint to start from
    stop_file: str | None = None  # its existence asks every worker to stop after the current stream batch
    read_cpus: float | None = None  # logical CPUs per stream read task (Ray Train: a fraction)
    read_concurrency: int | None = None  # read tasks at once (None: as many as CPUs allow)

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.use_gpu else torch.device("cpu")


def failed_state_file(rank: int) -> str:
    """Where a worker whose training failed leaves its learner's state, in the run dir."""
    return "failed_state.pt" if rank == 0 else f"failed_state.rank{rank}.pt"


def run_worker(config: RunConfig, ctx: WorkerContext, sink: Sink, report: Report | None = None) -> dict:
    """Run this rank's part of the stream; returns rank 0's summary (other ranks: their own).

    Args:
        sink: stores a checkpoint; every rank calls it at the same stream batches.
        report: under Ray Tune, takes the search metrics at every eval point before the end
            (`tune_report_hook`); None otherwise.

    Raises:
        TrainingError: the training diverged; the learner's state is saved first
            (RUN_DIR/`failed_state_file(rank)`) for a post-mortem.
    """
    from streamssl.evaluation import MetricsLogger, NullLogger
    from streamssl.train.evaluate import load_eval_data

    torch.set_num_threads(ctx.threads)
    device = ctx.device
    end = stream_end(config, ctx.total, ctx.world)
    learner = Learner(config, device, total_updates(config, end // ctx.world), rank=ctx.rank)
    state = _restore(learner, ctx)
    logger = MetricsLogger(ctx.run_dir, None) if ctx.rank == 0 else NullLogger()
    if ctx.rank == 0 and ctx.resume_dir is not None:
        logger.resume(_metrics_up_to(ctx.run_dir, state.samples_seen))
    eval_data = load_eval_data(config, ctx.dataset_dir) if ctx.rank == 0 else None
    save = checkpoint_saver(ctx, logger, sink)
    hooks = [dedup_hook(config, logger), checkpoint_hook(config, save)]
    if report is not None:
        hooks.append(tune_report_hook(config, ctx, logger, report))
    try:  # metrics logged so far reach the disk however the loop ends
        summary = _learn(config, ctx, learner, state, eval_data, logger, hooks)
        if summary["interrupted"] and config.checkpoint.every and state.batches % config.checkpoint.every:
            save(learner, state)  # stopped between checkpoints: one more, where it stopped
    finally:
        logger.close()
    _write_outputs(learner, ctx)
    return summary


def _restore(learner: Learner, ctx: WorkerContext) -> LoopState:
    if ctx.resume_dir is None:
        return LoopState()
    state = LoopState(**load_checkpoint(ctx.resume_dir, ctx.rank, learner, world_size=ctx.world))
    log.info("rank %d resumes at stream position %d", ctx.rank, state.samples_seen)
    return state


def _learn(config: RunConfig, ctx: WorkerContext, learner: Learner, state: LoopState, eval_data, logger,
           hooks: list) -> dict:
    """The loop over this rank's stream batches, from where `state` says the rank is."""
    from streamssl.streams import read_stream
    from streamssl.train.skips import StreamSkips, run_skips

    b = config.learner.stream_batch
    stream = read_stream(ctx.stream_dir, rank=ctx.rank, world_size=ctx.world, block=b, size=config.model.read_size,
                         num_cpus=ctx.read_cpus, concurrency=ctx.read_concurrency)
    reader = iter(stream.iter_batches(batch_size=b, batch_format="numpy"))  # a generator: closed below
    batches = itertools.islice(reader, state.batches, None)
    batches = StreamSkips(state.skipped, ctx.stream_dir, ctx.dataset_dir, config.dataset.strict).filter(batches)
    try:
        summary = run_loop(config, learner, batches, ctx.total, eval_data, logger, state=state, world_size=ctx.world,
                           progress=ctx.rank == 0 and ctx.progress, hooks=hooks, should_stop=stop_check(ctx))
    except TrainingError:
        _save_failed_state(learner, ctx)
        raise
    finally:
        reader.close()  # a stopped run shuts its stream reader down here, not in a later garbage collection
    summary.update(run_skips(state.skipped, eval_data, summary["samples_seen"], ctx.dataset_dir, ctx.rank))
    return summary


def _save_failed_state(learner: Learner, ctx: WorkerContext) -> None:
    path = fsio.join(ctx.run_dir, failed_state_file(ctx.rank))
    with fsio.atomic_path(path) as tmp:
        torch.save(learner.state_dict(), tmp)
    log.error("rank %d: training failed; its learner's state is in %s", ctx.rank, path)


def stop_check(ctx: WorkerContext) -> Callable[[], bool]:
    """Whether a stop was requested (`ctx.stop_file` exists), agreed by every rank.

    The ranks all-reduce their answers after every stream batch, so all of them stop after the
    same batch even when they see the file at different moments (their collectives stay matched).
    """
    from streamssl import distributed

    device = ctx.device

    def check() -> bool:
        asked = ctx.stop_file is not None and fsio.exists(ctx.stop_file)
        mine = torch.tensor([1.0 if asked else 0.0], device=device)
        return bool(distributed.all_reduce_mean(mine).item() > 0) if ctx.world > 1 else bool(mine.item())

    return check


def _metrics_up_to(run_dir: str, samples_seen: int) -> pd.DataFrame | None:
    path = fsio.join(run_dir, "metrics.parquet")
    if not fsio.exists(path):
        return None
    frame = fsio.read_dataframe(path)
    return frame[frame.samples_seen <= samples_seen].reset_index(drop=True)


def _write_outputs(learner: Learner, ctx: WorkerContext) -> None:
    keys = list(learner.buffer.keys)
    fsio.write_text(fsio.join(ctx.run_dir, f"buffer_keys.rank{ctx.rank}.json"), json.dumps(keys))
    if ctx.rank == 0:
        with fsio.atomic_path(fsio.join(ctx.run_dir, "model.pt")) as tmp:
            torch.save({"method": learner.method.state_dict()}, tmp)
        write_backbone(ctx.run_dir, learner.method)  # the backbone alone, for torchvision/timm (export.py)


def dedup_hook(config: RunConfig, logger) -> Callable:
    """Every `dedup.every` stream batches, all workers deduplicate their buffers together."""
    from streamssl.train.dedup_round import global_dedup_round

    def hook(learner: Learner, state: LoopState) -> None:
        if not config.dedup.every or state.batches % config.dedup.every:  # equal on every rank
            return
        stats = global_dedup_round(learner.buffer, config.dedup.threshold, config.dedup.max_fraction)
        at = {"samples_seen": state.samples_seen, "progress": 0.0, "update": learner.update}
        logger.log_many("dedup/removed", stats["removed_per_rank"], **at)
        logger.log("dedup/bytes", float(stats["bytes_exchanged"]), **at)
        logger.log("dedup/seconds", stats["seconds"], **at)

    return hook


def checkpoint_saver(ctx: WorkerContext, logger, sink: Sink) -> Callable:
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
        if config.checkpoint.every and state.batches % config.checkpoint.every == 0:
            save(learner, state)

    return hook


def tune_report_hook(config: RunConfig, ctx: WorkerContext, logger, report: Report) -> Callable:
    """Under Ray Tune, every rank reports once per eval point reached before the end.

    `report` (`ray.train.report`) is a barrier, so every rank reports at the same stream positions
    (known to all from the config); only rank 0's metrics reach Tune (TuneReportCallback), and only
    rank 0 evaluated, so the others send placeholders. Metrics are flushed first so that a trial
    the scheduler stops here keeps its curve on disk. The end of the stream is reported by the
    trial driver once the run's outputs are written, so a stop decision there cannot cut them short.
    """
    from streamssl.train.evaluate import eval_positions

    pending = [p for p in eval_positions(config.eval.points, ctx.total) if p < ctx.total]

    def hook(learner: Learner, state: LoopState) -> None:
        due = [p for p in pending if p <= state.samples_seen]
        if not due:
            return
        del pending[:len(due)]
        logger.flush()
        report(eval_metrics(state.evals if ctx.rank == 0 else [], ctx.total, learner.update))

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


def local_sink(run_dir: str, keep: int) -> Sink:
    """In-process checkpoints: RUN_DIR/checkpoints/pos-NNNNNNNNNNNN (stream position), the newest `keep` kept.

    The rank files are saved into a local folder first: on a local disk it is renamed into place
    (whole or not at all); for a URI it is uploaded, manifests last (complete once they exist).
    """
    root = fsio.join(run_dir, "checkpoints")

    def sink(save: Callable[[Path], None], metrics: dict) -> None:
        target = fsio.join(root, f"pos-{metrics['samples_seen']:012d}")
        staging = fsio.cache_dir("uploads") if fsio.is_uri(run_dir) else run_dir
        fsio.makedirs(staging)
        with tempfile.TemporaryDirectory(dir=staging) as tmp:
            save(Path(tmp))
            if fsio.is_uri(target):
                fsio.upload_tree(tmp, target, last=("rank*.done",))
            else:
                fsio.makedirs(root)
                Path(tmp).rename(target)
                Path(tmp).mkdir()  # TemporaryDirectory cleans up a folder at its path
        for old in fsio.glob(root, "pos-*")[:-keep]:
            fsio.remove_tree(old)

    return sink
