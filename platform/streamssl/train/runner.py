"""The in-process driver: prepare (if needed) -> stream -> learn + evaluate -> report.

It runs the per-worker loop with one worker in this process, fed by Ray Data's ordered stream.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import torch

from streamssl.config import RunConfig, dump
from streamssl.errors import StreamSSLError, TrainingError

log = logging.getLogger(__name__)


def data_root() -> Path:
    return Path(os.environ.get("STREAMSSL_DATA", "data"))


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def ensure_dataset(config: RunConfig) -> Path:
    """The prepared dataset dir, preparing it on first use (cached by source + options)."""
    from streamssl.errors import renamed
    from streamssl.ingest import prepare
    from streamssl.validation import check_dataset, dataset_key

    ds = config.dataset
    key = {"source": ds.source, "path": ds.path, "options": ds.options}
    out = Path(ds.dir) if ds.dir else data_root() / "datasets" / f"{ds.source}-{_digest(key)}"
    if not (out / "dataset.json").exists():
        log.info("preparing %s into %s", ds.source, out)
        with renamed(dataset_key):  # prepare names PATH and --flags; here they are pipeline keys
            prepare(ds.source, ds.path, str(out), **ds.options)
    check_dataset(config, out)
    return out


def stream_args(config: RunConfig) -> dict:
    s = config.stream
    return {"kind": s.kind, "samples_per_class": s.samples_per_class, "blend_ratio": s.blend_ratio,
            "class_order": s.class_order, "label_column": s.label_column,
            "classes_per_segment": s.classes_per_segment, "order_by": s.order_by,
            "seed": config.seed if s.seed is None else s.seed}


def ensure_stream(config: RunConfig, dataset_dir: Path) -> Path:
    """The materialized stream dir for this config, built on first use (cached by its arguments)."""
    from streamssl.errors import renamed
    from streamssl.scoring import ensure_scored
    from streamssl.streams.build import build_stream
    from streamssl.validation import stream_key

    args = stream_args(config)
    # a curriculum column is scored on first use; its checksum keys the cache, so re-scoring rebuilds
    score_sha = ensure_scored(dataset_dir, args["order_by"]) if args["order_by"] else None
    key = {**args, "score_sha256": score_sha} if score_sha else args
    out = dataset_dir / "streams" / f"{args['kind']}-{_digest(key)}"
    if not (out / "stream.json").exists():
        log.info("materializing the %s stream into %s", args["kind"], out)
        with renamed(stream_key):  # the planner names its arguments; here they are stream.* keys
            build_stream(str(dataset_dir), str(out), **args)
    return out


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def pick_device(config: RunConfig) -> torch.device:
    if config.scaling.use_gpu:
        if not torch.cuda.is_available():
            raise StreamSSLError("scaling.use_gpu=true but no CUDA device is visible")
        return torch.device("cuda")
    return torch.device("cpu")


def run_info(config: RunConfig, dataset_dir: Path, class_names: list, status: str, **extra) -> dict:
    return {"name": config.name, "method": config.method_name, "stream": config.stream.kind,
            "dataset": config.dataset.source, "dataset_dir": str(dataset_dir),
            "label_column": config.stream.label_column, "num_classes": len(class_names),
            "class_names": class_names, "seed": config.seed, "status": status, "git_sha": git_sha(),
            "config": "config.yaml", **extra}


def uses_ray_train(config: RunConfig, trainer: str = "auto") -> bool:
    """Several workers or a GPU go through Ray Train; one CPU worker runs in this process."""
    if trainer != "auto":
        return trainer == "ray"
    return config.scaling.num_workers > 1 or config.scaling.use_gpu


def run_pipeline(config: RunConfig, run_dir: str | Path, progress: bool = True, trainer: str = "auto",
                 resume: bool = False, tune: bool = False) -> dict:
    """Run one pipeline end to end into run_dir (resume: from its newest complete checkpoint).

    `tune`: inside a Ray Tune trial; always launches Ray Train, whose workers report to the trial.
    """
    from streamssl.ray_setup import init_ray
    from streamssl.streams import stream_info
    from streamssl.validation import check_before_work

    check_before_work(config)  # data paths, Ray address, GPUs: fail in seconds, before writing anything
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump(config, run_dir / "config.yaml")
    dataset_dir = ensure_dataset(config)
    init_ray()
    stream_dir = ensure_stream(config, dataset_dir)
    total = int(stream_info(stream_dir)["num_samples"])
    class_names = _class_names(dataset_dir, config.stream.label_column)
    info = run_info(config, dataset_dir, class_names, "running", stream_dir=str(stream_dir),
                    num_workers=config.scaling.num_workers)
    (run_dir / "run.json").write_text(json.dumps(info, indent=2, default=str))
    start = time.perf_counter()
    resume_dir = find_resume_checkpoint(run_dir, config.scaling.num_workers) if resume else None
    if tune or uses_ray_train(config, trainer):
        summary = _fit_ray_train(config, run_dir, dataset_dir, stream_dir, total, progress, resume_dir, tune)
    else:
        summary = _run_in_process(config, run_dir, dataset_dir, stream_dir, total, progress, resume_dir)
    info.update(status="completed", wall_seconds=round(time.perf_counter() - start, 2), **summary)
    _finish(run_dir, info)
    return info


def _fit_ray_train(config, run_dir, dataset_dir, stream_dir, total, progress, resume_dir, tune=False) -> dict:
    from streamssl.config import flatten
    from streamssl.train.trainer import fit

    try:
        return fit(config, flatten(config.to_dict()), run_dir, dataset_dir, stream_dir, total, progress, resume_dir,
                   tune=tune)
    except Exception as err:  # Ray wraps worker errors; the cause's first line is what users need
        cause = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        lines = [line for line in str(cause).splitlines() if line.strip()]
        message = lines[-1] if lines else type(cause).__name__
        _write_failed(run_dir, message)
        raise StreamSSLError(f"Ray Train run failed: {message}") from err


def _run_in_process(config, run_dir, dataset_dir, stream_dir, total, progress, resume_dir) -> dict:
    from streamssl.train.worker import WorkerContext, local_sink, run_worker

    torch.set_num_threads(config.learner.threads or torch.get_num_threads())
    ctx = WorkerContext(0, 1, pick_device(config), run_dir, dataset_dir, stream_dir, total, progress, resume_dir)
    try:
        return run_worker(config, ctx, local_sink(run_dir, config.checkpoint.keep))
    except TrainingError as err:
        if getattr(err, "state", None) is not None:
            torch.save(err.state, run_dir / "failed_state.pt")
        _write_failed(run_dir, str(err), failed_state="failed_state.pt")
        raise


def find_resume_checkpoint(run_dir: Path, world_size: int) -> Path:
    """The newest complete checkpoint of a run (in-process or Ray Train); partial ones are skipped."""
    from streamssl.train.checkpoint import latest_complete

    candidates = [*run_dir.glob("checkpoints/pos-*"), *run_dir.glob("ray_train/*/checkpoint_*")]
    found = latest_complete(sorted(p for p in candidates if p.is_dir()), world_size)
    if found is None:
        raise StreamSSLError(f"{run_dir}: no complete checkpoint to resume from (set checkpoint.every > 0)")
    return found


def _class_names(dataset_dir: Path, column: str) -> list:
    from streamssl.ingest import load_dataset_info

    info = load_dataset_info(dataset_dir)
    return info.get("label_columns", {}).get(column, {}).get("class_names", info["class_names"])


def _finish(run_dir: Path, info: dict) -> None:
    from streamssl.report import write_report

    (run_dir / "run.json").write_text(json.dumps(info, indent=2, default=str))
    write_report([run_dir], run_dir)


def _write_failed(run_dir: Path, error: str, **extra) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    info.update(status="failed", error=error, **extra)
    (run_dir / "run.json").write_text(json.dumps(info, indent=2, default=str))
    log.error("run stopped: %s; details in %s", error, run_dir)
