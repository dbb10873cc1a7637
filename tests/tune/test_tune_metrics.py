"""Searches select on validation kNN; test metrics are reported beside it, never selected on."""

import math

import pytest
from tunespec import write_spec

from streamssl.errors import ConfigError
from streamssl.evaluation import MetricsLogger
from streamssl.train.worker import eval_metrics
from streamssl.tune.leaderboard import TrialRecord, leaderboard, markdown, write_best
from streamssl.tune.spec import load_spec

GOOD = {"method.temperature": {"loguniform": [0.05, 0.5]}}


def test_eval_metrics_report_validation_and_test_knn():
    out = eval_metrics([(0, 0.5, 0.4), (50, 0.7, 0.6), (100, 0.9, 0.8)], total=100, updates=7)
    assert (out["knn"], out["val_knn"], out["progress"], out["updates"]) == (0.9, 0.8, 1.0, 7)
    assert out["knn_auc"] == pytest.approx(0.7) and out["val_knn_auc"] == pytest.approx(0.6)
    old = eval_metrics([(0, 0.5), (100, 0.7)], total=100, updates=1)  # a checkpoint from before validation
    assert old["knn"] == 0.7 and math.isnan(old["val_knn"])
    assert math.isnan(eval_metrics([], 100, 0)["val_knn"])


def test_validation_is_the_default_metric_and_needs_a_validation_subset(tmp_path):
    assert load_spec(write_spec(tmp_path, GOOD)).metric == "val_knn"
    assert load_spec(write_spec(tmp_path, GOOD, {"metric": "knn_auc"})).metric == "knn_auc"
    with pytest.raises(ConfigError, match="search.metric: val_knn needs a validation subset"):
        load_spec(write_spec(tmp_path, GOOD, overrides={"eval.val_samples": 0}))
    with pytest.raises(ConfigError, match="space.eval.val_samples"):
        load_spec(write_spec(tmp_path, {"eval.val_samples": {"choice": [0, 16]}}))


def _trial(trials, name: str, test: float, val: float) -> TrialRecord:
    info = {"method": "imai", "stream": "seq", "status": "completed", "updates": 4, "wall_seconds": 1.0}
    logger = MetricsLogger(trials / name, info, tensorboard=False)
    for seen, scale in ((0, 0.5), (64, 1.0)):
        at = {"samples_seen": seen, "progress": seen / 64, "update": seen // 16}
        logger.log("eval/knn_top1", test * scale, protocol="knn:scale k=10", **at)
        logger.log("eval/val_knn_top1", val * scale, protocol="knn:scale k=10 val=32", **at)
    logger.close()
    return TrialRecord(name, {"method.temperature": 0.1 if name == "a" else 0.2})


def test_leaderboard_ranks_by_validation_and_best_yaml_follows_it(tmp_path):
    trials = tmp_path / "trials"
    records = [_trial(trials, "a", test=0.9, val=0.6), _trial(trials, "b", test=0.7, val=0.8)]
    frame = leaderboard(records, trials)  # the default metric: val_knn
    assert frame["trial"].tolist() == ["b", "a"] and frame.loc[0, "val_knn"] == 0.8
    assert frame.loc[0, "final_knn"] == 0.7 and frame.loc[0, "val_knn_auc"] == pytest.approx(0.6)
    assert leaderboard(records, trials, metric="knn")["trial"].tolist() == ["a", "b"]
    spec = load_spec(write_spec(tmp_path, GOOD))
    write_best(spec, frame.iloc[0].to_dict(), tmp_path / "best.yaml")
    assert "by val_knn 0.8000" in (tmp_path / "best.yaml").read_text()
    assert "method:\n  name: imai" in (tmp_path / "best.yaml").read_text()
    text = markdown(spec, frame, frame.iloc[0].to_dict(), [])
    assert "metric val_knn" in text and "Warning" not in text
    test_spec = load_spec(write_spec(tmp_path, GOOD, {"metric": "knn"}))
    assert "a test metric" in markdown(test_spec, frame, None, [])
