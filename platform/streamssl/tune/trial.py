"""The Tune function trainable: one trial = one pipeline run through Ray Train.

The trial actor is only a driver (it holds a token CPU share); its TorchTrainer's workers take the
pipeline's scaling. Workers report validation and test kNN at each eval point through the
`ray.train.report` that train/trainer.py hands them (ASHA acts on the search metric, validation
kNN by default); this driver reports the end once the run directory is complete, so a stop
decision there cannot cut outputs short.
"""

from __future__ import annotations

import os
from pathlib import Path

from streamssl import fsio
from streamssl.tune.spec import plain_params, trial_config

VAL_TOP1 = "eval/val_knn_top1"
STARTS_FILE = "trial_starts.txt"  # one line per launch of a trial: resumes must not relaunch finished ones


def run_trial(params: dict, *, base_flat: dict, pinned: dict, trials_dir: str, storage_env: dict | None = None) -> None:
    """Run the base pipeline with this trial's params into TRIALS_DIR/<trial_id>.

    Args:
        params: the sampled space values, dotted config keys.
        base_flat: the base pipeline's dotted keys (spec overrides applied).
        pinned: keys the search driver fixed for every trial (the prepared dataset dir, CPUs per
            worker), so trials neither prepare data concurrently nor size themselves per node.
        trials_dir: absolute folder (or URI) holding one run directory per trial.
        storage_env: the driver's S3 settings (`fsio.storage_env`); this actor's node may lack them.
    """
    import ray.tune

    from streamssl.pipeline import run_pipeline

    os.environ.update(storage_env or {})
    run_dir = fsio.join(trials_dir, ray.tune.get_context().get_trial_id())
    fsio.makedirs(run_dir)
    record_start(run_dir)
    config = trial_config(base_flat, {**pinned, **plain_params(params)})
    info = run_pipeline(config, run_dir, progress=False, trainer="ray", tune=True)
    ray.tune.report(final_metrics(run_dir, info))


def record_start(run_dir: str) -> None:
    """One more line in STARTS_FILE (rewritten whole: an object store cannot append)."""
    path = fsio.join(run_dir, STARTS_FILE)
    fsio.write_text(path, (fsio.read_text(path) if fsio.exists(path) else "") + "start\n")


def final_metrics(run_dir: str | Path, info: dict) -> dict:
    """The end-of-stream report: final validation and test kNN, their AUCs over progress, position
    and updates (the same keys as `worker.eval_metrics`)."""
    from streamssl.evaluation.metrics import summarize
    from streamssl.evaluation.metrics_log import load_metrics

    frame = load_metrics(run_dir)
    stats = summarize(frame, info.get("num_classes"))
    return {"knn": float(info["final_knn"]), "knn_auc": stats["auc"], **validation_stats(frame), "progress": 1.0,
            "samples_seen": int(info["samples_seen"]), "updates": int(info["updates"])}


def validation_stats(frame) -> dict:
    """val_knn (the last validation kNN top-1) and val_knn_auc (its mean over stream progress) of
    a run's metrics; NaN when the run has no validation subset."""
    from streamssl.evaluation.metrics import area_under_curve, curve, final_value

    val = curve(frame, VAL_TOP1)
    x, y = val["progress"].to_numpy(), val["value"].to_numpy()
    return {"val_knn": final_value(y), "val_knn_auc": area_under_curve(x, y) if len(y) > 1 else final_value(y)}
