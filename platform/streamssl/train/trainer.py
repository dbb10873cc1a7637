"""Ray Train: W DDP workers each run the per-worker loop on their ordered slice of the stream.

Stream batch t goes to worker t mod W (read_stream's deterministic rank split with block = B),
so at every step the workers together consume W consecutive stream batches and their step counts
are equal. Gradients are averaged across workers after each backward (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch

from streamssl import fsio
from streamssl.config import RunConfig
from streamssl.resolve import resolve

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
    """Runs inside each Ray Train worker; `payload` holds plain data only (no config objects)."""
    import ray.train

    from streamssl.train.worker import WorkerContext, run_worker

    config = resolve(payload["config"])
    ctx = ray.train.get_context()  # ray: rank and world size of this worker
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # Ray sets OMP_NUM_THREADS=1 in workers: follow the worker's CPU allotment instead
    torch.set_num_threads(config.learner.threads or max(1, int(payload["cpus"])))
    device = torch.device("cuda", torch.cuda.current_device()) if config.scaling.use_gpu else torch.device("cpu")
    run_dir = Path(payload["run_dir"])
    _write_pid(run_dir, rank)
    wctx = WorkerContext(rank, world, device, run_dir, Path(payload["dataset_dir"]), Path(payload["stream_dir"]),
                         payload["total"], payload.get("progress", True), _resume_dir(payload),
                         tune=payload.get("tune", False), read_cpus=READ_CPUS, read_concurrency=READ_CONCURRENCY)
    summary = run_worker(config, wctx, _report_sink)
    if not wctx.tune:  # under Tune the trial driver reports the end, after the run's outputs are written
        ray.train.report({"samples_seen": summary["samples_seen"], "final_knn": summary["final_knn"]})
    return summary


def _resume_dir(payload: dict) -> Path | None:
    """After a worker failure Ray hands back the last reported checkpoint; else --resume's choice."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()  # ray: the latest checkpoint every rank reported
    if checkpoint is not None:
        return Path(checkpoint.path)
    return Path(payload["resume_dir"]) if payload.get("resume_dir") else None


def _report_sink(save, metrics: dict) -> None:
    """Every rank saves its rank files into a temp dir; Ray Train merges them into one checkpoint."""
    import tempfile

    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        save(Path(tmp))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))  # ray: a barrier


def _write_pid(run_dir: Path, rank: int) -> None:
    """Worker PIDs, for operators (and the fault-tolerance test) to find a worker to stop, and the
    workers' placement group, which a Tune driver releases when it stops the trial early."""
    import ray.util

    folder = run_dir / "workers"
    fsio.write_text(folder / f"rank{rank}.pid", str(os.getpid()))
    group = ray.util.get_current_placement_group()
    if group is not None:
        fsio.write_text(folder / f"rank{rank}.placement_group", group.id.hex())


def release_placement_groups(run_dir: Path) -> int:
    """Remove the placement groups this run's workers recorded; returns how many were removed.

    A Tune trial stopped early (ASHA) dies with its Train controller, but the workers' placement
    group is scoped to the search driver's job and outlives them, holding its CPUs: a few stopped
    trials leave too little for the next trial's workers, which then wait forever.
    """
    import ray.util
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    removed = 0
    for path in sorted((Path(run_dir) / "workers").glob("rank*.placement_group")):
        group_id = path.read_text().strip()
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


def fit(config: RunConfig, explicit: dict, run_dir: Path, dataset_dir: Path, stream_dir: Path, total: int,
        progress: bool = True, resume_dir: Path | None = None, tune: bool = False) -> dict:
    """Launch the TorchTrainer and return rank 0's summary.

    With `tune`, the workers report kNN at each eval point and TuneReportCallback forwards rank 0's
    reports to the enclosing Tune trial (this must then run inside a Tune function trainable).
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    cpus = worker_cpus(config)
    payload = {"config": explicit, "cpus": cpus, "run_dir": str(run_dir.resolve()),
               "dataset_dir": str(dataset_dir.resolve()), "stream_dir": str(stream_dir.resolve()),
               "total": total, "progress": False, "resume_dir": str(resume_dir) if resume_dir else None,
               "tune": tune}
    resources = {"CPU": cpus, **({"GPU": 1} if config.scaling.use_gpu else {})}
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=payload,
        torch_config=TorchConfig(backend="nccl" if config.scaling.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=config.scaling.num_workers,
                                               use_gpu=config.scaling.use_gpu, resources_per_worker=resources),
        # a fresh name per launch: reusing one makes Ray Train silently restore that run's state
        run_config=ray.train.RunConfig(name=f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                       storage_path=str((run_dir / "ray_train").resolve()),
                                       callbacks=_tune_callbacks(tune),
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.checkpoint.keep),
                                       failure_config=ray.train.FailureConfig(
                                           max_failures=config.checkpoint.max_failures, controller_failure_limit=1)))
    from streamssl.train.progress import ProgressFollower

    # the workers' own bars stay in their logs; the driver draws one from rank 0's progress file
    with ProgressFollower(run_dir, total, config.method_name, enabled=progress and not tune):
        result = _fit_off_main_thread(trainer)
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
