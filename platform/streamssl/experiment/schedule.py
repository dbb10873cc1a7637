"""Running an experiment's matrix on Ray: one task per run, at most max_concurrent at a time.

Layout of OUT: `experiment.json` (the spec's matrix and the run names: what --resume checks) and
`runs/<cell>-s<seed>/`, one normal run directory per run. The dataset and every stream the matrix
needs are prepared here, once, before any run starts, and pinned into the run configs by absolute
path, so concurrent runs only read caches and never build them. OUT, the run dirs and the datasets
may be URIs (`s3://...`): everything goes through `streamssl.fsio`, and each run's task gets the
driver's storage settings.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from streamssl import fsio
from streamssl.errors import ConfigError, StreamSSLError
from streamssl.experiment.spec import ExperimentSpec, RunSpec, expand, run_config

log = logging.getLogger(__name__)

STATE_FILE = "experiment.json"
RUNS = "runs"
DRIVER_CPUS = 0.01  # a run through Ray Train: the task only drives the trainer, whose workers hold CPUs
READ_RESERVE_CPUS = 1.0  # kept free for the stream read tasks of the runs in flight (1 CPU each)


@dataclass(frozen=True)
class Outcome:
    """What became of one run of the matrix in this invocation (or an earlier one)."""

    name: str
    status: str  # completed | failed | skipped (completed before this --resume)
    error: str = ""
    final_knn: float = float("nan")


def run_dir(out: str | Path, run: RunSpec) -> str:
    return fsio.join(out, RUNS, run.name)


def run_status(path: str | Path) -> str:
    """run.json's status, 'missing' without a readable one."""
    try:
        return str(fsio.read_json(fsio.join(path, "run.json")).get("status", "unknown"))
    except (OSError, ValueError):
        return "missing"


def check_out(out: str | Path, resume: bool) -> None:
    """A new experiment needs a DIR without one; --resume needs one (both before any work)."""
    holds = fsio.exists(fsio.join(out, STATE_FILE)) or fsio.exists(fsio.join(out, RUNS))
    if resume and not fsio.is_file(fsio.join(out, STATE_FILE)):
        raise StreamSSLError(f"--resume: {out} holds no experiment to resume (no {STATE_FILE})")
    if not resume and holds:
        raise StreamSSLError(f"{out} already holds an experiment; pass --resume to finish it, or pick another --out")


def check_same_matrix(spec: ExperimentSpec, out: str | Path) -> None:
    """--resume runs the matrix stored in OUT; a spec that defines other runs is refused."""
    stored = fsio.read_json(fsio.join(out, STATE_FILE)).get("matrix", {})
    current = json.loads(json.dumps(spec.matrix(), default=str))
    changed = [key for key in current if stored.get(key) != current[key]]
    if changed:
        raise StreamSSLError(f"--resume: the spec's {', '.join(changed)} differ from the experiment in {out}; "
                             "resume with the same spec, or pick another --out")


def prepare_data(spec: ExperimentSpec, runs: list[RunSpec]) -> dict[str, dict]:
    """Prepare every dataset and stream the runs need, here, once; returns the keys pinned per run
    (run name -> {dataset.dir: absolute path[, scaling.cpus_per_worker]})."""
    from streamssl.pipeline import ensure_dataset, ensure_stream, stream_args, uses_ray_train
    from streamssl.train.trainer import worker_cpus
    from streamssl.validation import check_before_work

    datasets: dict[str, str] = {}
    streams: set[str] = set()
    pinned = {}
    for run in runs:
        config = run_config(spec, run)
        ds = config.dataset
        key = json.dumps([ds.source, ds.path, ds.dir, ds.options], sort_keys=True, default=str)
        if key not in datasets:
            check_before_work(config)  # data paths, Ray address, GPUs: in seconds, before any prepare
            datasets[key] = fsio.absolute(ensure_dataset(config))
        stream_key = json.dumps([key, stream_args(config)], sort_keys=True, default=str)
        if stream_key not in streams:
            streams.add(stream_key)
            ensure_stream(config, datasets[key])
        pinned[run.name] = {"dataset.dir": datasets[key]}
        if uses_ray_train(config):  # sized once here, not per node by each run
            pinned[run.name]["scaling.cpus_per_worker"] = worker_cpus(config)
    return pinned


@dataclass(frozen=True)
class Footprint:
    task_cpus: float  # what the run's Ray task asks for
    held_cpus: float  # what the whole run holds while it trains (its Ray Train workers included)
    gpus: float


def footprint(config) -> Footprint:
    from streamssl.pipeline import uses_ray_train

    if uses_ray_train(config):
        s = config.scaling
        return Footprint(DRIVER_CPUS, DRIVER_CPUS + s.num_workers * (s.cpus_per_worker or 1),
                         float(s.num_workers) if s.use_gpu else 0.0)
    threads = float(config.learner.threads or 1)
    return Footprint(threads, threads, 0.0)


def runs_at_once(spec: ExperimentSpec, need: Footprint, cluster: dict) -> int:
    """max_concurrent, lowered to what the cluster can hold at once: GPUs, and CPUs that leave one
    free for stream reads (Ray Data read tasks waiting for a CPU the runs hold would wait forever)."""
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    if need.gpus > gpus:
        raise ConfigError(f"scaling.use_gpu: a run needs {need.gpus:g} GPU, the cluster has {gpus:g}")
    fits = math.floor((cpus - READ_RESERVE_CPUS) / need.held_cpus + 1e-9)
    if need.gpus:
        fits = min(fits, math.floor(gpus / need.gpus + 1e-9))
    if fits < 1:
        raise ConfigError(f"learner.threads / scaling: a run holds {need.held_cpus:g} CPUs and its stream reads "
                          f"need {READ_RESERVE_CPUS:g} more; the cluster has {cpus:g}")
    if fits < spec.max_concurrent:
        log.warning("max_concurrent: the cluster (%g CPUs, %g GPUs) holds %d of these runs at once, not %d",
                    cpus, gpus, fits, spec.max_concurrent)
    return min(spec.max_concurrent, fits)


def write_state(spec: ExperimentSpec, out: str, runs: list[RunSpec]) -> None:
    fsio.write_json(fsio.join(out, STATE_FILE), {
        "spec": str(spec.path), "base": str(spec.base), "matrix": spec.matrix(),
        "runs": [{"name": r.name, "cell": r.cell, "method": r.method, "stream": r.stream, "seed": r.seed,
                  "grid": dict(r.grid)} for r in runs]})


def run_experiment(spec: ExperimentSpec, out: str | Path, resume: bool = False, progress: bool = True) -> list[Outcome]:
    """Run (or finish) the matrix into OUT; returns one Outcome per run, in matrix order."""
    from streamssl.ray_setup import init_ray

    out = fsio.absolute(out)
    check_out(out, resume)
    if resume:
        check_same_matrix(spec, out)
    runs = expand(spec)
    # a loaded machine can take longer than Ray's 60 s to start a Ray Train run's workers (set before
    # Ray starts: its processes inherit the environment)
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "300")
    init_ray()
    pinned = prepare_data(spec, runs)
    if not resume:
        fsio.makedirs(out)
        write_state(spec, out, runs)
    todo = [run for run in runs if run_status(run_dir(out, run)) != "completed"]
    print(f"{len(runs)} runs, {len(runs) - len(todo)} already completed, {len(todo)} to run", flush=True)
    done = {run.name: Outcome(run.name, "skipped") for run in runs if run not in todo}
    done.update(execute(spec, out, todo, pinned, progress))
    return [done[run.name] for run in runs]


def execute(spec: ExperimentSpec, out: str, todo: list[RunSpec], pinned: dict, progress: bool) -> dict[str, Outcome]:
    """Launch one Ray task per run, keep at most runs_at_once in flight, collect their outcomes."""
    import ray
    from tqdm import tqdm

    if not todo:
        return {}
    configs = {run.name: run_config(spec, run, pinned[run.name]) for run in todo}
    needs = [footprint(c) for c in configs.values()]
    largest = Footprint(0.0, max(n.held_cpus for n in needs), max(n.gpus for n in needs))
    limit = runs_at_once(spec, largest, ray.cluster_resources())
    task = ray.remote(execute_run)
    pending, in_flight, outcomes = list(todo), {}, {}
    bar = tqdm(total=len(todo), desc="runs", unit="run", disable=not progress, dynamic_ncols=True)
    try:
        while pending or in_flight:
            while pending and len(in_flight) < limit:
                run = pending.pop(0)
                in_flight[_launch(task, configs[run.name], run_dir(out, run), spec.transfer)] = run
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            run = in_flight.pop(ready[0])
            outcomes[run.name] = _collect(ready[0], run, run_dir(out, run))
            bar.update(1)
            _announce(bar, outcomes[run.name])
    except KeyboardInterrupt:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()
    return outcomes


def _launch(task, config, path: str, transfer: tuple = ()):
    """Start one run's task (a rerun starts clean: no stale metrics or checkpoints); its ObjectRef.

    The task gets the driver's S3 settings: workers of a cluster (or of a Ray started before they
    were set) would not find the bucket otherwise."""
    from streamssl.config import flatten

    cpus = footprint(config).task_cpus
    fsio.remove_tree(path)
    env = fsio.storage_env()
    options = {"runtime_env": {"env_vars": env}} if env else {}
    return task.options(num_cpus=cpus, max_retries=0, name=f"experiment:{fsio.name(path)}", **options).remote(
        flatten(config.to_dict()), path, max(1, int(cpus)), [str(d) for d in transfer])


def _collect(ref, run: RunSpec, path: str) -> Outcome:
    """The task's outcome; a task that died without returning (killed worker) counts as failed."""
    import ray

    try:
        result = ray.get(ref)
    except Exception as err:  # the worker process died: the run could not record anything itself
        message = _last_line(err)
        mark_failed(path, run_info_stub(run), message)
        return Outcome(run.name, "failed", message)
    return Outcome(run.name, result["status"], result.get("error", ""), result.get("final_knn", float("nan")))


def _announce(bar, outcome: Outcome) -> None:
    if outcome.status == "completed":
        bar.write(f"  {outcome.name}: final kNN {100 * outcome.final_knn:.2f}%")
    else:
        bar.write(f"  {outcome.name}: FAILED ({outcome.error})")


def execute_run(flat: dict, path: str, threads: int, transfer: list[str] = ()) -> dict:
    """The Ray task: one run into `path`, then its transfer evaluations (RUN_DIR/transfer/<dataset
    folder name>/eval.json); failures are recorded in its run.json and returned."""
    import torch

    from streamssl.pipeline import run_pipeline
    from streamssl.resolve import resolve

    torch.set_num_threads(threads)  # the runner keeps the thread count it finds (learner.threads unset)
    config = resolve(flat)
    try:
        info = run_pipeline(config, path, progress=False)
        run_transfers(path, transfer, config.seed)
    except Exception as err:  # one run's failure must not stop the others
        message = _last_line(err)
        mark_failed(path, run_info_stub(config), message)
        return {"status": "failed", "error": message}
    return {"status": "completed", "final_knn": float(info["final_knn"])}


def run_transfers(path: str | Path, datasets, seed: int) -> None:
    """The spec's `transfer` datasets: kNN and linear probe of the run's final backbone on each."""
    from streamssl.evaluation.transfer import load_model, transfer_eval, write_outputs

    for dataset in datasets:
        result = transfer_eval(load_model(path), dataset, seed=seed)
        write_outputs(result, transfer_dir(path, dataset))


def transfer_dir(path: str | Path, dataset) -> Path | str:
    return fsio.as_path(fsio.join(path, "transfer", fsio.name(dataset)))


def run_info_stub(source) -> dict:
    """run.json fields for a run that failed before the runner wrote its own (RunSpec or RunConfig)."""
    method = getattr(source, "method_name", None) or getattr(source, "method", "?")
    stream = source.stream.kind if hasattr(source.stream, "kind") else source.stream
    return {"method": method, "stream": stream, "seed": source.seed}


def mark_failed(path: str | Path, stub: dict, message: str) -> None:
    """Status failed with the error in run.json (the runner's own record kept when it wrote one)."""
    try:
        info = fsio.read_json(fsio.join(path, "run.json"))
    except (OSError, ValueError):
        info = dict(stub)
    if info.get("status") != "failed" or not info.get("error"):
        info.update(status="failed", error=message)
    fsio.write_json(fsio.join(path, "run.json"), info)


def _last_line(err: BaseException) -> str:
    """The root cause's last non-empty line (Ray wraps task errors in tracebacks)."""
    cause = err
    while cause.__cause__ is not None:
        cause = cause.__cause__
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[-1] if lines else type(cause).__name__
