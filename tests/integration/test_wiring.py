"""The takeaway pieces wired into a run: backbone files and snapshots, `model.init_from`,
`eval.points: segments` with the continual-learning matrices, an MLflow mirror read back with
MLflow's own client, compute accounting, the effective learning rate and grad checkpointing."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from streamssl.cli import main
from streamssl.evaluation.continual import read_segment_csv
from streamssl.export import load_backbone_into
from streamssl.models import build_backbone

pytestmark = pytest.mark.ray

# smoke.yaml: 4 classes x 32 samples in a seq stream, stream_batch 16
WIRED = ["eval.points=segments", "eval.snapshots=true", "learner.lr_scaling=linear",
         "learner.lr_reference_batch=32", "learner.warmup_updates=2", "model.grad_checkpointing=true"]


@pytest.fixture(scope="module")
def wired_run(data_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("wired")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    run_dir = root / "run"
    mlflow = pytest.importorskip("mlflow")
    # an sqlite store keeps artifacts under ./mlruns of the working directory unless told otherwise
    mlflow.MlflowClient(tracking_uri=uri).create_experiment("wiring", artifact_location=(root / "artifacts").as_uri())
    assert main(["run", "pipelines/smoke.yaml", *WIRED, f"tracking.mlflow_uri={uri}",
                 "tracking.mlflow_experiment=wiring", "--out", str(run_dir), "--no-progress"]) == 0
    return run_dir, uri


def test_backbone_and_snapshots_at_every_segment_end(wired_run):
    run_dir, _ = wired_run
    info = json.loads((run_dir / "run.json").read_text())
    knn = pd.read_parquet(run_dir / "metrics.parquet").query("metric == 'eval/knn_top1'")
    assert list(knn.samples_seen) == [0, 32, 64, 96, 128]  # `segments`: every class's end
    snaps = sorted(p.name for p in (run_dir / "snapshots").iterdir())
    assert snaps == [f"backbone-{n:012d}.pt" for n in (0, 32, 64, 96, 128)]
    net, _ = build_backbone("cnn4")
    load_backbone_into(net, run_dir / "backbone.pt")  # strict: every name and shape
    end = torch.load(run_dir / "snapshots" / snaps[-1], weights_only=True)
    assert all(torch.equal(end[k], v) for k, v in net.state_dict().items())
    assert info["effective_lr"] == pytest.approx(0.03 * 16 / 32)  # linear: 1 worker x 16 of 32
    lrs = pd.read_parquet(run_dir / "metrics.parquet").query("metric == 'train/lr'").value.tolist()
    assert lrs[:2] == pytest.approx([0.0075, 0.015]) and lrs[2:] == pytest.approx([0.015] * (len(lrs) - 2))


def test_continual_metrics_recomputed_from_the_matrix(wired_run):
    run_dir, _ = wired_run
    info = json.loads((run_dir / "run.json").read_text())
    r = read_segment_csv(run_dir / "segment_matrix.csv")
    assert r.shape == (5, 4) and np.isfinite(r).all() and info["segment_rows"] == [0, 32, 64, 96, 128]
    assert info["bwt"] == pytest.approx(np.mean([r[4, j] - r[j + 1, j] for j in range(3)]), abs=1e-3)
    assert info["fwt"] == pytest.approx(np.mean([r[j - 1, j - 1] - r[0, j - 1] for j in range(2, 5)]), abs=1e-3)
    assert len(info["stability_min"]) == 4 and (run_dir / "segment_matrix.png").stat().st_size > 5_000
    report = (run_dir / "report.md").read_text()
    assert "## Continual-learning metrics" in report and "segment_matrix.png" in report


def test_compute_recorded_in_run_json_and_report(wired_run):
    run_dir, _ = wired_run
    info = json.loads((run_dir / "run.json").read_text())
    c = info["compute"]
    assert c["flops_per_update"] > 1e6 and c["flops_total"] == c["flops_per_update"] * info["updates"]
    assert c["samples_per_s"] > 0 and 0 <= c["data_wait_fraction"] < 1 and c["peak_rss_bytes"] > 100 * 2 ** 20
    assert "## Compute" in (run_dir / "report.md").read_text()


def test_mlflow_mirror_read_back_with_its_client(wired_run):
    mlflow = pytest.importorskip("mlflow")
    run_dir, uri = wired_run
    info = json.loads((run_dir / "run.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(info["tracking"]["mlflow"])
    # params: the config as the workers ran it, `segments` resolved to the segment ends
    assert run.info.status == "FINISHED" and run.data.params["eval.points"] == "[0.0, 0.25, 0.5, 0.75, 1.0]"
    assert run.data.params["learner.lr_scaling"] == "linear" and run.data.params["model.backbone"] == "cnn4"
    history = client.get_metric_history(run.info.run_id, "eval/knn_top1")
    parquet = pd.read_parquet(run_dir / "metrics.parquet").query("metric == 'eval/knn_top1'")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == \
        list(zip(parquet.samples_seen, parquet.value))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "knn_vs_progress.png", "segment_matrix.png"} <= artifacts


def test_init_from_a_run_starts_from_its_backbone(wired_run, tmp_path):
    """The new run's untrained evaluation is the old run's final one: same weights, same eval data."""
    run_dir, _ = wired_run
    assert main(["run", "pipelines/smoke.yaml", f"model.init_from={run_dir}", "eval.points=[0,1]",
                 "eval.linear=off", "--out", str(tmp_path / "next"), "--no-progress"]) == 0
    before = pd.read_parquet(run_dir / "metrics.parquet").query("metric == 'eval/knn_top1'")
    after = pd.read_parquet(tmp_path / "next" / "metrics.parquet").query("metric == 'eval/knn_top1'")
    assert after.value.iloc[0] == pytest.approx(before.value.iloc[-1])


def test_missing_init_from_fails_before_work_in_one_line(tmp_path, capsys):
    code = main(["run", "pipelines/smoke.yaml", f"model.init_from={tmp_path / 'nope.pt'}",
                 "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "model.init_from" in err
    assert not (tmp_path / "x" / "run.json").exists()
