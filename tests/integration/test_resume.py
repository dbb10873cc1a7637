"""Exact resume from mid-stream checkpoints, and recovery from a killed Ray Train worker."""

import json
import os
import shutil
import signal
import threading
import time

import pandas as pd
import pytest

from streamssl import resolve
from streamssl.pipeline import run_pipeline
from streamssl.train.checkpoint import is_complete

pytestmark = pytest.mark.ray

MICRO = ["method.crops=2", "learner.threads=1", "eval.points=[0,0.5,1]", "checkpoint.every=2",
         "checkpoint.keep=10"]


def final_state(run_dir):
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    knn = metrics[metrics.metric == "eval/knn_top1"].value.to_numpy()
    keys = {p.name: json.loads(p.read_text()) for p in sorted(run_dir.glob("buffer_keys.rank*.json"))}
    return knn, keys


def checkpoints(run_dir):
    found = [*run_dir.glob("checkpoints/pos-*"), *run_dir.glob("ray_train/*/checkpoint_*")]
    return sorted(p for p in found if p.is_dir())


# Ray Train's resume (2 workers, checkpoints read back from storage, kNN and buffers equal to the
# uninterrupted run) is tested on the 2-node cluster (tests/storage/test_multinode_s3.py); one Ray
# Train worker is shown equal to the in-process runner (test_ray_train)
@pytest.mark.parametrize("workers, trainer", [(1, "local")])
def test_interrupted_then_resumed_run_matches_an_uninterrupted_one(workers, trainer, data_root, tmp_path):
    config = resolve.load("pipelines/smoke.yaml", MICRO + [f"scaling.num_workers={workers}"])
    full = tmp_path / "full"
    run_pipeline(config, full, progress=False, trainer=trainer)
    saved = checkpoints(full)
    assert len(saved) >= 2 and all(is_complete(c, workers) for c in saved)
    # The "interrupted" run: the same run stopped right after its first checkpoint.
    cut = tmp_path / "cut"
    shutil.copytree(full, cut, ignore=shutil.ignore_patterns("buffer_keys*", "model.pt", "report.md"))
    for later in checkpoints(cut)[1:]:
        shutil.rmtree(later)
    info = json.loads((cut / "run.json").read_text())
    (cut / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))  # as a stopped run left it
    info = run_pipeline(config, cut, progress=False, trainer=trainer, resume=True)
    assert info["status"] == "completed"
    (knn_full, keys_full), (knn_cut, keys_cut) = final_state(full), final_state(cut)
    assert list(knn_cut) == list(knn_full) and keys_cut == keys_full and len(keys_full) == workers


def test_a_partial_checkpoint_is_skipped_on_resume(data_root, tmp_path):
    config = resolve.load("pipelines/smoke.yaml", MICRO)
    run_dir = tmp_path / "run"
    run_pipeline(config, run_dir, progress=False, trainer="local")
    newest = checkpoints(run_dir)[-1]
    (newest / "rank0.done").unlink()  # as if the worker died while saving
    from streamssl.pipeline import find_resume_checkpoint

    assert find_resume_checkpoint(run_dir, 1) == str(checkpoints(run_dir)[-2])


def test_a_killed_worker_is_restarted_and_the_run_finishes(data_root, tmp_path):
    config = resolve.load("pipelines/smoke.yaml", MICRO + [
        "scaling.num_workers=2", "checkpoint.max_failures=2", "dataset.options.samples_per_class=160"])
    run_dir = tmp_path / "killed"
    result = {}
    thread = threading.Thread(target=lambda: result.update(run_pipeline(config, run_dir, progress=False)))
    thread.start()
    pid_file, deadline = run_dir / "workers" / "rank1.pid", time.time() + 120
    while not (checkpoints(run_dir) and pid_file.exists()) and time.time() < deadline and thread.is_alive():
        time.sleep(0.2)
    assert checkpoints(run_dir), "no checkpoint appeared before the run ended"
    killed = int(pid_file.read_text())
    os.kill(killed, signal.SIGKILL)
    thread.join(timeout=240)
    assert not thread.is_alive() and result.get("status") == "completed"
    assert int(pid_file.read_text()) != killed  # a new worker process finished the stream
    assert result["samples_seen"] == 640
