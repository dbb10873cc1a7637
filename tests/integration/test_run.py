"""`streamssl run` end to end on the smoke pipeline, for every registered method."""

import json

import pandas as pd
import pytest

from streamssl.cli import main
from streamssl.methods import METHODS

pytestmark = pytest.mark.ray


@pytest.mark.parametrize("method", sorted(METHODS))
def test_smoke_pipeline_runs_every_method(method, data_root, tmp_path):
    run_dir = tmp_path / method
    assert main(["run", "pipelines/smoke.yaml", f"method.name={method}", "--out", str(run_dir),
                 "--no-progress"]) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["method"] == method and info["updates"] > 0
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    knn = metrics[metrics.metric == "eval/knn_top1"]
    assert list(knn.samples_seen) == [0, 64, 128]  # eval.points 0, 0.5, 1 of 128 samples
    assert knn.value.between(0, 1).all() and knn.protocol.str.startswith("knn:scale").all()
    assert (metrics.metric == "train/loss").sum() == info["updates"]
    assert "| untrained |" in (run_dir / "report.md").read_text()
    assert (run_dir / "knn_vs_progress.png").stat().st_size > 10_000


def test_non_finite_loss_stops_the_run_and_saves_state(data_root, tmp_path, capsys):
    run_dir = tmp_path / "nan"
    code = main(["run", "pipelines/smoke.yaml", "learner.lr=1e30", "learner.lars=false", "method.crops=2",
                 "--out", str(run_dir), "--no-progress"])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "update" in err and "stream position" in err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert (run_dir / "failed_state.pt").exists()
