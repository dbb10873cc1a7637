"""One run, top to bottom: prepare (if needed) -> stream -> train -> report, into a run directory.

Training runs in this process (one CPU worker, fed by Ray Data's ordered stream) or through Ray
Train (several workers or a GPU, `train/trainer.py`); both run `train/worker.py`'s `run_worker`
with the one `WorkerContext` built here. run.json `status` goes `running` -> `completed`, `failed`
(with `error`, and `failed_state` when a worker saved its learner) or `interrupted` (with
`resumable`; see pipeline/lifecycle.py). Every path may be local or a URI (`streamssl.fsio`);
local paths are made absolute, since Ray workers may run in another working directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING

import torch

from streamssl import fsio
from streamssl.config import RunConfig, dump
from streamssl.errors import StreamSSLError
from streamssl.pipeline.datacache import ensure_dataset, ensure_stream
from streamssl.pipeline.lifecycle import (
    STOP_FILE,
    RunInterrupted,
    StopOnSignal,
    clear_run,
    latest_checkpoint,
    read_info,
    write_info,
)
from streamssl.pipeline.provenance import class_names, run_info
from streamssl.resolve import with_dataset_classes
from streamssl.train.skips import warn_run_skips

if TYPE_CHECKING:
    from streamssl.train.worker import WorkerContext

log = logging.getLogger(__name__)


def uses_ray_train(config: RunConfig, trainer: str = "auto") -> bool:
    """Several workers or a GPU go through Ray Train; one CPU worker runs in this process."""
    if trainer != "auto":
        return trainer == "ray"
    return config.scaling.num_workers > 1 or config.scaling.use_gpu


def run_pipeline(config: RunConfig, run_dir: str | os.PathLike, progress: bool = True, trainer: str = "auto",
                 resume: bool = False, tune: bool = False) -> dict:
    """Run one pipeline end to end into run_dir (resume: from its newest complete checkpoint).

    A fresh run first removes what an earlier run left in run_dir (the CLI refuses a non-empty
    directory before this, unless --overwrite). `resume` writes nothing before it has found the
    checkpoint it continues from; a completed run is returned as it is, with `already_completed`.
    `tune`: inside a Ray Tune trial; always launches Ray Train, whose workers report to the trial.

    Raises:
        RunInterrupted: a signal stopped the run (run.json: status interrupted, resumable).
        StreamSSLError: the run failed (run.json: status failed, error).
    """
    run_dir = fsio.absolute(run_dir)
    resume_dir = dataset_dir = stream_dir = None
    if resume:
        previous = read_info(run_dir) or {}
        if previous.get("status") == "completed":
            return {**previous, "already_completed": True}
        resume_dir = find_resume_checkpoint(run_dir, config.scaling.num_workers)
        dataset_dir, stream_dir = _resumed_data(run_dir, previous, config)
    dataset_dir, stream_dir, total = _data(config, dataset_dir, stream_dir)
    config = with_dataset_classes(config, len(class_names(dataset_dir, config.stream.label_column)))
    info = _start(config, run_dir, dataset_dir, stream_dir, total, fresh=not resume)
    config = _with_eval_points(config, stream_dir, info)
    ray_train = tune or uses_ray_train(config, trainer)
    ctx = worker_context(config, run_dir, dataset_dir, stream_dir, total, ray_train=ray_train,
                         progress=progress, resume_dir=resume_dir)
    # float reductions follow the thread count: a run repeats bit for bit only with the same count
    info["torch_threads"] = ctx.threads
    start = time.perf_counter()
    summary = _train(config, run_dir, ctx, info, ray_train=ray_train, progress=progress, tune=tune)
    info.update(wall_seconds=round(time.perf_counter() - start, 2))
    if summary.pop("interrupted", False):
        _interrupted(run_dir, info, config, summary)
    info.update(status="completed", **summary)
    warn_run_skips(info.get("skipped"))
    _finish(run_dir, info, config)
    return info


def _with_eval_points(config: RunConfig, stream_dir: str, info: dict) -> RunConfig:
    """`eval.points: segments` made stream fractions for the workers (config.yaml keeps the word);
    run.json records the effective learning rate."""
    import dataclasses

    from streamssl.evaluation.continual import resolve_points
    from streamssl.train.learner import effective_lr

    info["effective_lr"] = effective_lr(config)
    points = resolve_points(config.eval.points, stream_dir)
    return dataclasses.replace(config, eval=dataclasses.replace(config.eval, points=points))


def worker_context(config: RunConfig, run_dir: str, dataset_dir: str, stream_dir: str, total: int, *,
                   ray_train: bool, progress: bool = True, resume_dir: str | None = None) -> WorkerContext:
    """The context every worker of this run gets; Ray Train workers add their rank to it."""
    from streamssl.train.trainer import READ_CONCURRENCY, READ_CPUS, worker_cpus
    from streamssl.train.worker import WorkerContext

    run_dir = fsio.absolute(run_dir)
    paths = {"run_dir": run_dir, "dataset_dir": fsio.absolute(dataset_dir), "stream_dir": fsio.absolute(stream_dir),
             "stop_file": fsio.join(run_dir, STOP_FILE), "resume_dir": resume_dir and fsio.absolute(resume_dir)}
    threads = config.learner.threads
    if not ray_train:
        return WorkerContext(**paths, total=total, threads=threads or torch.get_num_threads(),
                             use_gpu=config.scaling.use_gpu, progress=progress)
    # Ray sets OMP_NUM_THREADS=1 in workers: follow the worker's CPU allotment instead; the driver
    # draws the progress bar (train/progress.py), the workers' own would stay in their logs
    return WorkerContext(**paths, total=total, world=config.scaling.num_workers,
                         threads=threads or max(1, int(worker_cpus(config))), use_gpu=config.scaling.use_gpu,
                         progress=False, read_cpus=READ_CPUS, read_concurrency=READ_CONCURRENCY)


def _check_device(config: RunConfig) -> None:
    if config.scaling.use_gpu and not torch.cuda.is_available():
        raise StreamSSLError("scaling.use_gpu=true but no CUDA device is visible")


def _data(config: RunConfig, dataset_dir: str | None, stream_dir: str | None) -> tuple[str, str, int]:
    """(prepared dataset, materialized stream, its length), preparing and building what is missing."""
    from streamssl.ray_setup import init_ray, init_ray_during
    from streamssl.streams import stream_info
    from streamssl.validation import check_before_work

    check_before_work(config)  # data paths, Ray address, GPUs: fail in seconds, before any prepare
    dataset_dir = dataset_dir or ensure_dataset(config)
    if stream_dir is None and config.stream.virtual:  # indexing needs no Ray: do it while Ray starts
        stream_dir = init_ray_during(lambda: ensure_stream(config, dataset_dir))
    else:
        init_ray()
        stream_dir = stream_dir or ensure_stream(config, dataset_dir)
    return dataset_dir, stream_dir, int(stream_info(stream_dir)["num_samples"])


def _start(config: RunConfig, run_dir: str, dataset_dir: str, stream_dir: str, total: int, fresh: bool) -> dict:
    """Write config.yaml and run.json (status running); a fresh run first clears an earlier one's files."""
    from streamssl.ingest.dataset import dataset_identity
    from streamssl.streams.split import unused_message
    from streamssl.train.loop import stream_end

    workers = config.scaling.num_workers
    unused = unused_message(total, workers, config.learner.stream_batch)
    if unused:
        log.warning("%s", unused)
    if fresh:
        clear_run(run_dir)  # an earlier run's files (TensorBoard events above all) must not mix in
    fsio.makedirs(run_dir)
    with fsio.atomic_path(fsio.join(run_dir, "config.yaml")) as tmp:
        dump(config, tmp)
    info = run_info(config, dataset_dir, class_names(dataset_dir, config.stream.label_column), "running",
                    dataset_id=dataset_identity(dataset_dir), stream_dir=str(stream_dir), stream_samples=total,
                    unused_samples=total - stream_end(config, total, workers), num_workers=workers)
    for message in info["warnings"]:  # once per run, at its start; report.md lists them too
        log.warning("%s: %s", config.method_name, message)
    write_info(run_dir, info)
    return info


def _resumed_data(run_dir: str, previous: dict, config: RunConfig) -> tuple[str | None, str | None]:
    """The dataset and stream a run started on (None: not recorded, find them as a new run would).

    Refuses to continue on a dataset whose content changed since the run started.
    """
    from streamssl.ingest.dataset import dataset_identity

    recorded = previous.get("dataset_dir")
    if not recorded or not fsio.is_file(fsio.join(recorded, "dataset.json")):
        return None, None
    sha = (previous.get("dataset_id") or {}).get("sha256")
    now = dataset_identity(recorded)["sha256"]
    if sha and sha != now:
        raise StreamSSLError(f"--resume {run_dir}: the dataset in {recorded} changed since the run started "
                             f"(content sha256 {sha[:12]}, now {now[:12]}); start a new run")
    stream = previous.get("stream_dir")
    return recorded, stream if stream and fsio.is_file(fsio.join(stream, "stream.json")) else None


def _train(config: RunConfig, run_dir: str, ctx: WorkerContext, info: dict, *, ray_train: bool, progress: bool,
           tune: bool) -> dict:
    """Train in this process or through Ray Train; run.json records a failure or a forced stop."""
    stop = contextlib.nullcontext() if tune else StopOnSignal(run_dir)
    try:
        with stop:
            if ray_train:
                return _fit_ray_train(config, ctx, progress, tune)
            return _run_in_process(config, ctx)
    except KeyboardInterrupt:  # a second signal: stopped at once, wherever it was
        _interrupted(run_dir, info, config, {})
    except Exception as err:
        saved = fsio.glob(run_dir, "failed_state*.pt")  # failing workers' learners (train/worker.py), rank 0 first
        _write_failed(run_dir, info, _one_line(err), **({"failed_state": fsio.name(saved[0])} if saved else {}))
        raise


def _fit_ray_train(config: RunConfig, ctx: WorkerContext, progress: bool, tune: bool) -> dict:
    from streamssl.train.trainer import fit

    try:
        return fit(config, ctx, progress=progress, tune=tune)
    except Exception as err:  # Ray wraps worker errors; the cause's last line is what users need
        cause = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        lines = [line for line in str(cause).splitlines() if line.strip()]
        message = lines[-1] if lines else type(cause).__name__
        raise StreamSSLError(f"Ray Train run failed: {message}") from err


def _run_in_process(config: RunConfig, ctx: WorkerContext) -> dict:
    from streamssl.train.worker import local_sink, run_worker

    _check_device(config)
    return run_worker(config, ctx, local_sink(ctx.run_dir, config.checkpoint.keep))


def find_resume_checkpoint(run_dir: str, world_size: int) -> str:
    """The newest complete checkpoint of a run (in-process or Ray Train); partial ones are skipped."""
    if not fsio.is_file(fsio.join(run_dir, "config.yaml")):
        raise StreamSSLError(f"--resume {run_dir}: no config.yaml (not a run directory?)")
    found = latest_checkpoint(run_dir, world_size)
    if found is None:
        raise StreamSSLError(f"{run_dir}: no complete checkpoint to resume from (set checkpoint.every > 0)")
    return found


def _finish(run_dir: str, info: dict, config: RunConfig) -> None:
    from streamssl.pipeline.outputs import continual_fields, mirror_to_trackers
    from streamssl.report import write_report

    write_info(run_dir, info)  # continual metrics read run.json's stream fields
    info.update(continual_fields(run_dir))
    write_info(run_dir, info)
    write_report([run_dir], run_dir)
    tracked = mirror_to_trackers(config, run_dir, info["status"])
    if tracked:
        info["tracking"] = tracked
        write_info(run_dir, info)


def _write_failed(run_dir: str, info: dict, error: str, **extra) -> None:
    info.update(status="failed", error=error, **extra)
    write_info(run_dir, info)
    log.error("run stopped: %s; details in %s", error, run_dir)


def _interrupted(run_dir: str, info: dict, config: RunConfig, summary: dict) -> None:
    """Record a stopped run (resumable when a complete checkpoint exists) and raise RunInterrupted."""
    checkpoint = latest_checkpoint(run_dir, config.scaling.num_workers)
    kept = {k: summary[k] for k in ("samples_seen", "updates") if k in summary}
    info.update(status="interrupted", resumable=checkpoint is not None, **kept)
    write_info(run_dir, info)
    where = f" at sample {kept['samples_seen']} of {info['stream_samples']}" if kept else ""
    if checkpoint is not None:
        hint = f"continue it with `streamssl run --resume {run_dir}`"
    else:
        hint = "it cannot be resumed (no checkpoint: set checkpoint.every > 0 for that)"
    raise RunInterrupted(f"interrupted{where}; metrics so far are in {run_dir}; {hint}")


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return text if isinstance(err, StreamSSLError) else f"{type(err).__name__}: {text}".rstrip(": ")
