"""Ray Train: W DDP workers each run the per-worker loop on their ordered slice of the stream.

Stream batch t goes to worker t mod W (read_stream's deterministic rank split with block = B),
so at every step the workers together consume W consecutive stream batches and their step counts
are equal. Gradients are averaged across workers after each backward (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from streamssl.config import RunConfig, resolve

log = logging.getLogger(__name__)


def worker_cpus(config: RunConfig) -> float:
    """CPUs per worker: what the pipeline says, else a share that leaves room for Ray Data's readers."""
    if config.scaling.cpus_per_worker:
        return config.scaling.cpus_per_worker
    total = os.cpu_count() or 2
    # A Dataset feeding W workers that hold every CPU starves its read tasks and hangs.
    return max(0.25, min(4.0, total / (config.scaling.num_workers + 1)))


def dedup_hook(config: RunConfig, logger):
    """Every `dedup.every` stream batches, all workers deduplicate their buffers together."""
    from streamssl.train.dedup_round import global_dedup_round

    steps = {"n": 0}

    def hook(learner, state) -> None:
        steps["n"] += 1  # identical on every rank: equal batch counts per rank
        if not config.dedup.every or steps["n"] % config.dedup.every:
            return
        stats = global_dedup_round(learner.buffer, config.dedup.threshold, config.dedup.max_fraction)
        at = {"samples_seen": state.samples_seen, "progress": 0.0, "update": learner.update}
        logger.log_many("dedup/removed", stats["removed_per_rank"], **at)
        logger.log("dedup/bytes", float(stats["bytes_exchanged"]), **at)
        logger.log("dedup/seconds", stats["seconds"], **at)

    return hook


def train_loop_per_worker(payload: dict) -> dict:
    """Runs inside each Ray Train worker; `payload` holds plain data only (no config objects)."""
    import ray.train

    from streamssl.evaluation import MetricsLogger, NullLogger
    from streamssl.streams import read_stream
    from streamssl.train.evaluate import load_eval_data
    from streamssl.train.loop import run_loop

    config = resolve(payload["config"])
    ctx = ray.train.get_context()  # ray: rank and world size of this worker
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # Ray sets OMP_NUM_THREADS=1 in workers: follow the worker's CPU allotment instead
    torch.set_num_threads(config.learner.threads or max(1, int(payload["cpus"])))
    device = torch.device("cuda", torch.cuda.current_device()) if config.scaling.use_gpu else torch.device("cpu")
    b = config.learner.stream_batch
    stream = read_stream(payload["stream_dir"], rank=rank, world_size=world, block=b, size=config.model.read_size)
    batches = stream.iter_batches(batch_size=b, batch_format="numpy")
    dataset_dir = Path(payload["dataset_dir"])
    eval_data = load_eval_data(config, dataset_dir) if rank == 0 else None
    logger = MetricsLogger(payload["run_dir"], None) if rank == 0 else NullLogger()
    hooks = [dedup_hook(config, logger)]
    summary = run_loop(config, batches, payload["total"], eval_data, logger, device, rank=rank, world_size=world,
                       progress=rank == 0 and payload.get("progress", True), hooks=hooks)
    learner = summary.pop("learner")
    logger.close()
    if rank == 0:
        torch.save({"method": learner.method.state_dict()}, Path(payload["run_dir"]) / "model.pt")
    return summary


def fit(config: RunConfig, explicit: dict, run_dir: Path, dataset_dir: Path, stream_dir: Path, total: int,
        progress: bool = True) -> dict:
    """Launch the TorchTrainer and return rank 0's summary."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    cpus = worker_cpus(config)
    payload = {"config": explicit, "cpus": cpus, "run_dir": str(run_dir.resolve()),
               "dataset_dir": str(dataset_dir.resolve()), "stream_dir": str(stream_dir.resolve()),
               "total": total, "progress": progress}
    resources = {"CPU": cpus, **({"GPU": 1} if config.scaling.use_gpu else {})}
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=payload,
        torch_config=TorchConfig(backend="nccl" if config.scaling.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=config.scaling.num_workers,
                                               use_gpu=config.scaling.use_gpu, resources_per_worker=resources),
        run_config=ray.train.RunConfig(name=f"{config.name}-{run_dir.name}",
                                       storage_path=str((run_dir / "ray_train").resolve()),
                                       failure_config=ray.train.FailureConfig(max_failures=0,
                                                                              controller_failure_limit=1)))
    result = trainer.fit()
    return result.return_value
