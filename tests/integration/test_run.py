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
    assert knn.protocol.str.contains("from=source-split").all()
    for metric in ("eval/val_knn_top1", "eval/crop_cosine", "eval/effective_rank"):  # validation and health
        assert list(metrics[metrics.metric == metric].samples_seen) == [0, 64, 128]
    assert (metrics.metric == "train/loss").sum() == info["updates"]
    # the steady window excludes the first stream batch's updates (start-up), never more
    assert 0 < info["steady_updates"] <= info["updates"] and info["steady_seconds"] > 0
    assert info["loop_started_at"] <= info["first_batch_at"] <= info["last_batch_at"]
    assert json.loads((run_dir / "progress.json").read_text())["samples_seen"] == 128
    linear = metrics[metrics.metric == "eval/linear_top1"]  # eval.linear: end, the default
    assert list(linear.samples_seen) == [128] and linear.protocol.str.startswith("linear epochs=").all()
    assert info["final_linear"] == pytest.approx(linear.value.iloc[0])
    report = (run_dir / "report.md").read_text()
    assert "| untrained |" in report and "linear probe %" in report and "## Representation health" in report
    assert (run_dir / "knn_vs_progress.png").stat().st_size > 10_000 and (run_dir / "health.png").exists()


def test_non_finite_loss_stops_the_run_and_saves_state(data_root, tmp_path, capsys):
    run_dir = tmp_path / "nan"
    code = main(["run", "pipelines/smoke.yaml", "learner.lr=1e30", "learner.lars=false", "method.crops=2",
                 "--out", str(run_dir), "--no-progress"])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "update" in err and "stream position" in err
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and info["error"] in err and info["failed_state"] == "failed_state.pt"
    assert (run_dir / "failed_state.pt").exists()


def test_linear_probe_at_every_point_and_off(data_root, tmp_path):
    for mode, expected in (("points", [0, 64, 128]), ("off", [])):
        run_dir = tmp_path / mode
        assert main(["run", "pipelines/smoke.yaml", f"eval.linear={mode}", "--out", str(run_dir),
                     "--no-progress"]) == 0
        metrics = pd.read_parquet(run_dir / "metrics.parquet")
        linear = metrics[metrics.metric == "eval/linear_top1"]
        assert list(linear.samples_seen) == expected
        per_class = metrics[metrics.metric == "eval/linear_class_acc"]
        assert len(per_class) == 4 * len(expected)  # the smoke dataset's 4 classes at each probe


def test_bad_linear_setting_is_one_line(tmp_path, capsys):
    assert main(["run", "pipelines/smoke.yaml", "eval.linear=sometimes", "--out", str(tmp_path / "x")]) == 2
    assert "eval.linear" in capsys.readouterr().err.strip()


@pytest.mark.parametrize("method, kind", [("simclr", "iid"), ("byol", "seq-bl"), ("scale", "seq-im"),
                                          ("empssl", "iid")])
def test_methods_on_the_other_stream_kinds(method, kind, data_root, tmp_path):
    """The learner is stream-agnostic; these pairs cover every kind besides the default seq."""
    run_dir = tmp_path / f"{method}-{kind}"
    assert main(["run", "pipelines/smoke.yaml", f"method.name={method}", f"stream.kind={kind}",
                 "--out", str(run_dir), "--no-progress"]) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["stream"] == kind and info["updates"] > 0
    knn = pd.read_parquet(run_dir / "metrics.parquet").query("metric == 'eval/knn_top1'")
    assert knn.samples_seen.iloc[-1] == info["samples_seen"] and len(knn) == 3
