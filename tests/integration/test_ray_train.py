"""The Ray Train path: one worker matches the in-process runner; two workers share the stream."""

import json

import pandas as pd
import pytest
import torch

from streamssl import resolve
from streamssl.errors import StreamSSLError
from streamssl.pipeline import run_pipeline

pytestmark = pytest.mark.ray

MICRO = ["method.crops=2", "learner.threads=1", "eval.points=[0,1]"]


def losses(run_dir):
    m = pd.read_parquet(run_dir / "metrics.parquet")
    return m[m.metric == "train/loss"].value.to_numpy(), m[m.metric == "eval/knn_top1"].value.to_numpy()


def test_one_ray_train_worker_matches_the_in_process_runner(data_root, tmp_path):
    config = resolve.load("pipelines/smoke.yaml", MICRO)
    local = run_pipeline(config, tmp_path / "local", progress=False, trainer="local")
    ray = run_pipeline(config, tmp_path / "ray", progress=False, trainer="ray")
    assert ray["updates"] == local["updates"] > 0
    (loss_a, knn_a), (loss_b, knn_b) = losses(tmp_path / "local"), losses(tmp_path / "ray")
    assert loss_a == pytest.approx(loss_b, rel=1e-4) and knn_a == pytest.approx(knn_b, abs=1e-6)


def test_two_workers_consume_the_whole_stream_in_equal_steps(data_root, tmp_path):
    config = resolve.load("pipelines/smoke.yaml", MICRO + ["scaling.num_workers=2", "dedup.every=2",
                                                        "dedup.threshold=0.5"])
    info = run_pipeline(config, tmp_path / "w2", progress=False)
    assert info["status"] == "completed" and info["samples_seen"] == 128
    assert info["updates"] == 128 // 16 // 2 * config.learner.k  # each rank: 4 stream batches x K
    saved = json.loads((tmp_path / "w2" / "run.json").read_text())
    assert saved["num_workers"] == 2 and (tmp_path / "w2" / "report.md").exists()
    m = pd.read_parquet(tmp_path / "w2" / "metrics.parquet")
    rounds = m[m.metric == "dedup/bytes"]
    assert len(rounds) == 2 and (rounds.value > 0).all()  # rounds after stream batches 2 and 4 per rank
    removed = m[m.metric == "dedup/removed"]
    assert sorted(removed.class_id.unique()) == [0, 1]  # per-rank counts (class_id holds the rank)


def test_a_ray_train_worker_whose_training_fails_saves_its_learner(data_root, tmp_path):
    config = resolve.load("pipelines/smoke.yaml", MICRO + ["learner.lr=1e30", "learner.lars=false"])
    with pytest.raises(StreamSSLError, match="Ray Train run failed: .*stream position"):
        run_pipeline(config, tmp_path / "nan", progress=False, trainer="ray")
    info = json.loads((tmp_path / "nan" / "run.json").read_text())
    assert info["status"] == "failed" and info["failed_state"] == "failed_state.pt"
    state = torch.load(tmp_path / "nan" / "failed_state.pt", weights_only=True)
    assert state["update"] >= 1 and "method" in state and "buffer" in state
