"""Trackers mirror metric rows, params and artifacts; read back with MLflow's own client."""

import sys

import pytest

from streamssl.errors import ConfigError
from streamssl.tracking import Trackers, TrackingSettings, check_available, metric_points

ROWS = [
    {"metric": "eval/knn_top1", "value": 40.0, "samples_seen": 0, "class_id": None},
    {"metric": "eval/knn_top1", "value": 55.5, "samples_seen": 128, "class_id": None},
    {"metric": "eval/knn_class_top1", "value": 12.5, "samples_seen": 128, "class_id": 3},
    {"metric": "train/loss", "value": float("nan"), "samples_seen": 128, "class_id": None},
]


def test_metric_points_name_classes_and_drop_non_finite_values():
    assert metric_points(ROWS) == [("eval/knn_top1", 40.0, 0), ("eval/knn_top1", 55.5, 128),
                                   ("eval/knn_class_top1/class_3", 12.5, 128)]


def test_mlflow_sqlite_store_read_back_with_mlflows_client(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow puts a sqlite store's artifacts in ./mlruns
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    report = tmp_path / "report.md"
    report.write_text("# a report\n")
    trackers = Trackers(TrackingSettings(mlflow_uri=uri, mlflow_experiment="exp"), "run-a",
                        {"method.name": "imai", "method.crops": 8}, tmp_path / "run")
    trackers.log_rows(ROWS)
    trackers.log_artifacts([report, tmp_path / "missing.png"])
    trackers.close("completed")

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(trackers.run_ids["mlflow"])
    assert run.info.run_name == "run-a" and run.info.status == "FINISHED"
    assert run.data.params == {"method.name": "imai", "method.crops": "8"}
    history = client.get_metric_history(run.info.run_id, "eval/knn_top1")
    assert [(m.step, m.value) for m in history] == [(0, 40.0), (128, 55.5)]
    assert run.data.metrics["eval/knn_class_top1/class_3"] == 12.5
    assert "train/loss" not in run.data.metrics
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["report.md"]


def test_a_failed_run_is_marked_failed_in_mlflow(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trackers = Trackers(TrackingSettings(mlflow_uri=uri), "run-b", {}, tmp_path / "run")
    trackers.close("failed")
    assert mlflow.MlflowClient(tracking_uri=uri).get_run(trackers.run_ids["mlflow"]).info.status == "FAILED"


def test_wandb_offline_run_gets_the_metrics_and_artifacts(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    report = tmp_path / "report.md"
    report.write_text("# a report\n")
    trackers = Trackers(TrackingSettings(wandb="offline", wandb_project="p"), "run-c", {"seed": 0}, tmp_path / "run")
    trackers.log_rows(ROWS)
    trackers.log_artifacts([report])
    run = trackers._sinks[0]._run
    assert run.summary["eval/knn_top1"] == 55.5 and run.summary["eval/knn_class_top1/class_3"] == 12.5
    assert run.config["seed"] == 0
    trackers.close("completed")
    saved = list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{trackers.run_ids['wandb']}/files/report.md"))
    assert len(saved) == 1


def test_a_missing_library_is_one_line_naming_the_key(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(ConfigError, match=r"^tracking.mlflow_uri: needs the optional package `mlflow`"):
        check_available(TrackingSettings(mlflow_uri="sqlite:///x.db"))


@pytest.mark.parametrize("settings, key", [(TrackingSettings(wandb="cloud"), "tracking.wandb"),
                                           (TrackingSettings(mlflow_uri=" "), "tracking.mlflow_uri")])
def test_bad_settings_name_their_key(settings, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        settings.validate()


def test_no_tracker_configured_is_a_no_op(tmp_path):
    trackers = Trackers(TrackingSettings(), "run-d", {}, tmp_path / "run")
    trackers.log_rows(ROWS)
    trackers.close("completed")
    assert trackers.run_ids == {} and not (tmp_path / "run").exists()
