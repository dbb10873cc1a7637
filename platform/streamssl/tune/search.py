"""Building and running the Ray Tuner for a validated SearchSpec (the only Ray import of the search).

Layout of OUT: `tune/` is Tune's experiment state (what --resume restores), `trials/<trial_id>/`
one normal run directory per trial, and the leaderboard files next to them. OUT may be a URI
(`s3://...`): Tune's storage is then that bucket (`storage_filesystem`), and every trial gets the
driver's S3 settings.
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path

from streamssl import fsio
from streamssl.errors import ConfigError, StreamSSLError
from streamssl.tune.spec import SearchSpec, candidate_config

log = logging.getLogger(__name__)

EXPERIMENT = "tune"
DRIVER_CPUS = 0.01  # the trial actor only drives a TorchTrainer; a whole CPU each deadlocks 2 trials


def run_search(spec: SearchSpec, out: str | Path, resume: bool = False, verbose: int = 1):
    """Prepare data, check resources, then run (or resume) the search; returns Tune's ResultGrid."""
    from streamssl.ray_setup import init_ray

    out = fsio.absolute(out)
    experiment = fsio.join(out, EXPERIMENT)
    if resume and not fsio.is_dir(experiment):
        raise StreamSSLError(f"--resume: {out} holds no search to resume (no {EXPERIMENT}/ folder)")
    if not resume and fsio.exists(experiment):
        raise StreamSSLError(f"{out} already holds a search; pass --resume to continue it, or pick another --out")
    # a loaded machine can take longer than Ray's 60 s to start a trial's workers; a timeout would
    # fail the trial (set before Ray starts: its processes inherit the environment)
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "300")
    init_ray()
    pinned = prepare_data(spec)
    check_resources(spec, pinned)
    fsio.makedirs(out)
    tuner = _restore(spec, out, pinned) if resume else build_tuner(spec, out, pinned, verbose)
    return tuner.fit()


def prepare_data(spec: SearchSpec) -> dict:
    """Prepare the dataset and every stream the space can ask for, here, once (trials only read).

    Returns the keys pinned for every trial: the prepared dataset dir (absolute, so trials on any
    node and in Tune's per-trial working dirs find it) and the CPUs per worker.
    """
    from streamssl.pipeline import ensure_dataset, ensure_stream
    from streamssl.train.trainer import worker_cpus

    base = candidate_config(spec, {})
    dataset_dir = fsio.absolute(ensure_dataset(base))
    for params in stream_variants(spec):
        ensure_stream(candidate_config(spec, params), dataset_dir)
    return {"dataset.dir": dataset_dir, "scaling.cpus_per_worker": worker_cpus(base)}


def stream_variants(spec: SearchSpec) -> list[dict]:
    """Every combination of the searched keys that change the stream (stream.*, seed).

    Continuous ranges over such keys would need a stream per trial, built concurrently: refused.
    """
    stream_params = [p for p in spec.space if p.key.startswith("stream.") or p.key == "seed"]
    for param in stream_params:
        if param.kind not in ("choice", "grid"):
            raise ConfigError(f"space.{param.key}: changes the stream, which is built before trials: "
                              f"use choice or grid, not {param.kind}")
    keys = [p.key for p in stream_params]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(p.values for p in stream_params))]


def trial_resources(spec: SearchSpec, pinned: dict) -> dict[str, float]:
    """The most CPUs and GPUs one trial's workers ask for, over every candidate value."""
    configs = [candidate_config(spec, pinned)]
    configs += [candidate_config(spec, {**pinned, p.key: v}, f"space.{p.key}")
                for p in spec.space if p.key.startswith("scaling.") for v in p.candidates()]
    cpus = max(c.scaling.num_workers * (c.scaling.cpus_per_worker or 1) for c in configs) + DRIVER_CPUS
    gpus = max(c.scaling.num_workers if c.scaling.use_gpu else 0 for c in configs)
    return {"CPU": cpus, "GPU": gpus}


def check_resources(spec: SearchSpec, pinned: dict) -> None:
    """Refuse a trial that can never be placed (Ray Train would wait for it forever)."""
    import ray

    have = ray.cluster_resources()
    for name, need in trial_resources(spec, pinned).items():
        if need > have.get(name, 0):
            key = "scaling.use_gpu" if name == "GPU" else "scaling.num_workers x scaling.cpus_per_worker"
            raise ConfigError(f"{key}: a trial needs {need:g} {name}, the cluster has {have.get(name, 0):g}")


def tune_space(spec: SearchSpec) -> dict:
    """Spec params -> Tune domains (randint's [lo, hi] includes hi; grid algorithm: lists are grids)."""
    from ray import tune

    make = {"choice": tune.choice, "grid": tune.grid_search,
            "uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v),
            "randint": lambda v: tune.randint(v[0], v[1] + 1)}
    kind = (lambda p: "grid") if spec.algorithm == "grid" else (lambda p: p.kind)
    return {p.key: make[kind(p)](p.values) for p in spec.space}


def _search_alg(spec: SearchSpec):
    if spec.algorithm == "tpe":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=spec.seed)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(max_concurrent=spec.max_concurrent, random_state=spec.seed)


def _scheduler(spec: SearchSpec):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if spec.asha is None:
        return FIFOScheduler()
    # time is stream progress (0..1, reported at every eval point), not wall time or report count
    return ASHAScheduler(time_attr="progress", max_t=1.0, grace_period=spec.asha.grace,
                         reduction_factor=spec.asha.reduction_factor)


def trial_dirname(trial) -> str:
    return trial.trial_id


def _trainable(spec: SearchSpec, out: str, pinned: dict):
    from ray import tune

    from streamssl.tune.trial import run_trial

    bound = tune.with_parameters(run_trial, base_flat=spec.base_flat, pinned=pinned,
                                 trials_dir=fsio.join(out, "trials"), storage_env=fsio.storage_env())
    return tune.with_resources(bound, {"CPU": DRIVER_CPUS})


def _release_callback(trials_dir: str):
    """A Tune callback that frees a finished (completed, stopped or failed) trial's worker CPUs."""
    from ray import tune

    from streamssl.train.trainer import release_placement_groups

    class ReleaseWorkerGroups(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            release_placement_groups(fsio.join(trials_dir, trial.trial_id))

        def on_trial_error(self, iteration, trials, trial, **info):
            release_placement_groups(fsio.join(trials_dir, trial.trial_id))

    return ReleaseWorkerGroups()


def build_tuner(spec: SearchSpec, out: str, pinned: dict, verbose: int = 1):
    from ray import tune

    filesystem, storage_path = fsio.resolve(out)  # (None, the folder) for a local OUT
    return tune.Tuner(
        _trainable(spec, out, pinned), param_space=tune_space(spec),
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples,
                                    search_alg=_search_alg(spec), scheduler=_scheduler(spec),
                                    max_concurrent_trials=spec.max_concurrent, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=storage_path, storage_filesystem=filesystem,
                                  verbose=verbose, callbacks=[_release_callback(fsio.join(out, "trials"))],
                                  failure_config=tune.FailureConfig(max_failures=0)))


def _restore(spec: SearchSpec, out: str, pinned: dict):
    """Finished trials keep their results; interrupted and errored ones start again."""
    from ray import tune

    filesystem, path = fsio.resolve(fsio.join(out, EXPERIMENT))
    return tune.Tuner.restore(path, _trainable(spec, out, pinned), resume_unfinished=True, restart_errored=True,
                              storage_filesystem=filesystem)
