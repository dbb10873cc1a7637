"""A real `streamssl run` process stopped with SIGINT mid-stream: status interrupted, metrics on
disk, a final checkpoint when checkpoints are on, and --resume finishing the run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from streamssl.cli import main

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
# 4 classes x 200 = 800 samples in 50 stream batches: the stop comes after the first two or three
LONG = ["method.crops=2", "learner.threads=1", "eval.linear_epochs=2", "dataset.options.samples_per_class=200"]


def start_run(run_dir, data_root, ray_local, *overrides):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "platform"), "STREAMSSL_DATA": str(data_root),
           "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}  # join the tests' Ray: a quicker start
    argv = [sys.executable, "-m", "streamssl.cli", "run", "pipelines/smoke.yaml", *LONG, *overrides,
            "--out", str(run_dir), "--no-progress"]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupt_mid_stream(process, run_dir):
    """SIGINT once the first stream batch is done (progress.json appears), then wait for the exit."""
    while not (run_dir / "progress.json").exists() and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    return process.returncode, err.strip().splitlines()[-1]


def run_json(run_dir):
    return json.loads((run_dir / "run.json").read_text())


def test_an_interrupted_run_without_checkpoints_keeps_its_metrics(data_root, ray_local, tmp_path):
    run_dir = tmp_path / "run"
    code, last = interrupt_mid_stream(start_run(run_dir, data_root, ray_local), run_dir)
    assert code == 130 and "interrupted at sample" in last and "cannot be resumed" in last
    info = run_json(run_dir)
    assert info["status"] == "interrupted" and info["resumable"] is False
    assert 0 < info["samples_seen"] < 800
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert (metrics.metric == "train/loss").sum() == info["updates"] > 0  # flushed up to the stop
    assert list(metrics.query("metric == 'eval/knn_top1'").samples_seen)[:1] == [0]


def test_an_interrupted_run_with_checkpoints_resumes_to_the_end(data_root, ray_local, tmp_path, capsys):
    run_dir = tmp_path / "run"
    process = start_run(run_dir, data_root, ray_local, "checkpoint.every=10", "eval.points=[0,0.5,1]")
    code, last = interrupt_mid_stream(process, run_dir)
    assert code == 130 and f"streamssl run --resume {run_dir}" in last
    info = run_json(run_dir)
    assert info["status"] == "interrupted" and info["resumable"] is True
    stopped_at = info["samples_seen"]
    assert (run_dir / "checkpoints" / f"pos-{stopped_at:012d}").is_dir()  # the final checkpoint, where it stopped
    capsys.readouterr()
    assert main(["run", "pipelines/smoke.yaml", *LONG, "--out", str(run_dir)]) == 2
    assert "--resume" in capsys.readouterr().err  # a resumable run is named as such
    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 0
    info = run_json(run_dir)
    assert info["status"] == "completed" and info["samples_seen"] == 800 and "resumable" not in info
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert list(metrics.query("metric == 'eval/knn_top1'").samples_seen) == [0, 400, 800]
    assert (metrics.metric == "train/loss").sum() == info["updates"] == 50  # no update lost or repeated


def test_ray_train_workers_stop_together_with_a_final_checkpoint(data_root, ray_local, tmp_path):
    from streamssl.pipeline.lifecycle import latest_checkpoint
    from streamssl.train.checkpoint import is_complete

    run_dir = tmp_path / "run"
    process = start_run(run_dir, data_root, ray_local, "scaling.num_workers=2", "checkpoint.every=10")
    code, last = interrupt_mid_stream(process, run_dir)
    assert code == 130 and f"streamssl run --resume {run_dir}" in last
    info = run_json(run_dir)
    assert info["status"] == "interrupted" and info["resumable"] is True and 0 < info["samples_seen"] < 800
    newest = latest_checkpoint(run_dir, 2)
    assert is_complete(newest, 2, verify=True)
    assert json.loads((Path(newest) / "rank0.done").read_text())["batches"] * 2 * 16 == info["samples_seen"]
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert metrics.samples_seen.max() == info["samples_seen"]
