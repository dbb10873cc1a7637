"""Ray Train: W DDP workers each run the per-worker loop on their ordered slice of the stream.

Stream batch t goes to worker t mod W (read_stream's deterministic rank split with block = B),
so at every step the workers together consume W consecutive stream batches and their step counts
are equal. Gradients are averaged across workers after each backward (gloo on CPU, NCCL on GPU).

Nothing here assumes a filesystem shared by the nodes: Ray Train's storage is the run dir's own
path or URI (`storage_filesystem` from `streamssl.fsio`), a worker resumes from the checkpoint in
that storage, rank 0's progress reaches the driver through a Ray actor (`train/progress.py`), and
the workers get the driver's S3 settings in their runtime environment.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import TYPE_CHECKING

from streamssl import fsio
from streamssl.config import RunConfig, flatten
from streamssl.resolve import resolve

if TYPE_CHECKING:
    from streamssl.train.worker import WorkerContext

log = logging.getLogger(__name__)

# Each worker's stream reads ask for a quarter CPU, at most 2 at once: placement groups of workers
# and of concurrent Tune trials can leave less than one whole logical CPU free, and read tasks
# asking for 1 CPU then never start (measured: 2 trials deadlocked with 0.98 CPU free).
READ_CPUS = 0.25
READ_CONCURRENCY = 2


def worker_cpus(config: RunConfig) -> float:
    """CPUs per worker: what the pipeline says, else a share that leaves room for Ray Data's readers."""
    if config.scaling.cpus_per_worker:
        return config.scaling.cpus_per_worker
    total = os.cpu_count() or 2
    # A Dataset feeding W workers that hold every CPU starves its read tasks and hangs.
    return max(0.25, min(4.0, total / (config.scaling.num_workers + 1)))


def train_loop_per_worker(payload: dict) -> dict:
    """Runs inside each Ray Train worker: the pipeline's `WorkerContext` with this worker's rank.

    `payload` holds the config as plain data (no config objects cross Ray), the context and `tune`.
    """
    import ray.train

    from streamssl.train.progress import install_publisher
    from streamssl.train.worker import run_worker

    config = resolve(payload["config"])
    rank = ray.train.get_context().get_world_rank()  # ray: this worker's rank
    ctx = dataclasses.replace(payload["context"], rank=rank, resume_dir=_resume_dir(payload["context"].resume_dir))
    _write_pid(ctx.run_dir, rank)
    board = payload.get("progress_board")
    if rank == 0 and board is not None:
        install_publisher(board.put.remote)  # ray: the driver's bar polls this actor
    report = ray.train.report if payload["tune"] else None  # ray: Tune's metrics at every eval point
    try:
        summary = run_worker(config, ctx, _report_sink, report=report)
    finally:
        install_publisher(None)
    if report is None:  # under Tune the trial driver reports the end, after the run's outputs are written
        ray.train.report({"samples_seen": summary["samples_seen"], "final_knn": summary["final_knn"]})
    return summary


def _resume_dir(chosen: str | None) -> str | None:
    """After a worker failure Ray hands back the last reported checkpoint; else --resume's choice.

    Either is read where it is stored (a path or URI), never from a worker-local copy.
    """
    import ray.train

    checkpoint = ray.train.get_checkpoint()  # ray: the latest checkpoint every rank reported
    if checkpoint is not None:
        return fsio.to_uri(checkpoint.filesystem, checkpoint.path)
    return chosen


def _report_sink(save, metrics: dict) -> None:
    """Every rank saves its rank files into a temp dir; Ray Train merges them into one checkpoint."""
    import tempfile
    from pathlib import Path

    import ray.train

    with tempfile.TemporaryDirectory(dir=fsio.cache_dir("uploads")) as tmp:
        save(Path(tmp))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))  # ray: a barrier


def _write_pid(run_dir: str, rank: int) -> None:
    """Worker PIDs and Ray node ids, for operators (and the fault-tolerance test) to find a worker to
    stop, and the workers' placement group, which a Tune driver releases when it stops the trial
    early. They go to the run's storage, which the driver reads wherever the worker ran."""
    import ray
    import ray.util

    folder = fsio.join(run_dir, "workers")
    fsio.write_text(fsio.join(folder, f"rank{rank}.pid"), str(os.getpid()))
    fsio.write_text(fsio.join(folder, f"rank{rank}.node"), ray.get_runtime_context().get_node_id())
    group = ray.util.get_current_placement_group()
    if group is not None:
        fsio.write_text(fsio.join(folder, f"rank{rank}.placement_group"), group.id.hex())


def release_placement_groups(run_dir: str) -> int:
    """Remove the placement groups this run's workers recorded; returns how many were removed.

    A Tune trial stopped early (ASHA) dies with its Train controller, but the workers' placement
    group is scoped to the search driver's job and outlives them, holding its CPUs: a few stopped
    trials leave too little for the next trial's workers, which then wait forever.
    """
    import ray.util
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    removed = 0
    for path in fsio.glob(fsio.join(run_dir, "workers"), "rank*.placement_group"):
        group_id = fsio.read_text(path).strip()
        state = ray.util.placement_group_table().get(group_id, {}).get("state")
        if state in ("CREATED", "PENDING", "RESCHEDULING"):
            ray.util.remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(group_id))))
            removed += 1
    return removed


def _tune_callbacks(tune: bool) -> list:
    if not tune:
        return []
    from ray.tune.integration.ray_train import TuneReportCallback

    return [TuneReportCallback()]


def fit(config: RunConfig, ctx: WorkerContext, progress: bool = True, tune: bool = False) -> dict:
    """Launch the TorchTrainer over `ctx` (every worker gets it with its own rank); rank 0's summary.

    With `tune`, the workers report kNN at each eval point and TuneReportCallback forwards rank 0's
    reports to the enclosing Tune trial (this must then run inside a Tune function trainable).
    `progress`: the driver draws a progress bar from what rank 0 publishes to a Ray actor.
    """
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from streamssl.train.progress import ProgressBoard, ProgressFollower

    cpus = worker_cpus(config)
    board = ray.remote(ProgressBoard).options(num_cpus=0).remote()  # ray: progress without a shared disk
    payload = {"config": flatten(config.to_dict()), "context": ctx, "tune": tune, "progress_board": board}
    filesystem, storage_path = fsio.resolve(fsio.join(ctx.run_dir, "ray_train"))
    env = fsio.storage_env()
    resources = {"CPU": cpus, **({"GPU": 1} if config.scaling.use_gpu else {})}
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=payload,
        torch_config=TorchConfig(backend="nccl" if config.scaling.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=config.scaling.num_workers,
                                               use_gpu=config.scaling.use_gpu, resources_per_worker=resources),
        # a fresh name per launch: reusing one makes Ray Train silently restore that run's state
        run_config=ray.train.RunConfig(name=f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                       storage_path=storage_path, storage_filesystem=filesystem,
                                       worker_runtime_env={"env_vars": env} if env else None,
                                       callbacks=_tune_callbacks(tune),
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.checkpoint.keep),
                                       failure_config=ray.train.FailureConfig(
                                           max_failures=config.checkpoint.max_failures, controller_failure_limit=1)))
    # the workers' own bars stay in their logs; the driver draws one from what rank 0 publishes
    read = lambda: ray.get(board.get.remote(), timeout=10)  # noqa: E731
    try:
        with ProgressFollower(read, ctx.total, config.method_name, enabled=progress and not tune):
            result = _fit_off_main_thread(trainer)
    finally:
        ray.kill(board)
    return result.return_value


def _fit_off_main_thread(trainer):
    """trainer.fit() in a helper thread while the main thread waits.

    Called from the main thread, fit() replaces the SIGINT handler with its own, which aborts the
    workers at once; from another thread it leaves signals alone, so the run's handler
    (lifecycle.StopOnSignal) asks the workers to stop after their current stream batch, with a
    final checkpoint. The main thread wakes often enough to run that handler.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return trainer.fit()
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as err:  # handed to the main thread as it is
            outcome["error"] = err

    thread = threading.Thread(target=target, name="ray-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
