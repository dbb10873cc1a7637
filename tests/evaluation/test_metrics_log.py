"""MetricsLogger files (parquet, CSV, TensorBoard, run.json) and the loaders' errors."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from streamssl.errors import StreamSSLError
from streamssl.evaluation.metrics_log import SCHEMA, MetricsLogger, load_metrics, load_run_info

PROTO = "knn:scale k=5 euclidean uniform memory=10 test=10"


def _log_some(logger):
    for update in range(3):
        logger.log("train/loss", 2.0 - update, samples_seen=10 * update, progress=update / 4, update=update)
    logger.log_many("eval/knn_class_acc", [0.5, np.nan, 0.25], samples_seen=20, progress=0.5, update=2,
                    protocol=PROTO)
    logger.log("eval/knn_top1", 0.4, samples_seen=20, progress=0.5, update=2, protocol=PROTO)


def test_files_hold_every_row_with_the_documented_schema(tmp_path):
    logger = MetricsLogger(tmp_path, {"method": "imai", "status": "running"})
    _log_some(logger)
    logger.flush()
    logger.log("train/loss", 0.5, samples_seen=40, progress=1.0, update=3)
    logger.close(status="completed")

    assert pq.read_schema(tmp_path / "metrics.parquet").names == SCHEMA.names
    assert pq.read_schema(tmp_path / "metrics.parquet").types == SCHEMA.types
    frame = load_metrics(tmp_path)
    assert len(frame) == 8
    acc = frame[frame["metric"] == "eval/knn_class_acc"].sort_values("class_id")
    assert acc["class_id"].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(acc["value"].to_numpy(), [0.5, np.nan, 0.25])
    assert set(acc["protocol"]) == {PROTO}
    assert frame["class_id"][frame["metric"] == "train/loss"].eq(-1).all()

    csv = pd.read_csv(tmp_path / "metrics.csv", keep_default_na=False, na_values=["NaN", "nan", ""])
    assert len(csv) == 8 and list(csv.columns) == SCHEMA.names
    assert csv["value"].sum() == pytest.approx(frame["value"].sum())
    assert load_run_info(tmp_path) == {"method": "imai", "status": "completed"}


def test_tensorboard_scalars_by_tag_with_samples_seen_steps(tmp_path):
    with MetricsLogger(tmp_path, None) as logger:
        _log_some(logger)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {"train/loss", "eval/knn_top1", "eval/knn_class_acc/class_0", "eval/knn_class_acc/class_2"}
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(0, 2.0), (10, 1.0), (20, 0.0)]
    assert not (tmp_path / "run.json").exists()  # run_info=None leaves run.json to the caller


def test_periodic_flush_writes_without_being_asked(tmp_path):
    logger = MetricsLogger(tmp_path, {"status": "running"}, flush_seconds=0.0, tensorboard=False)
    logger.log("train/loss", 1.0, samples_seen=1, progress=0.1, update=1)
    assert len(load_metrics(tmp_path)) == 1
    logger.update_info(status="failed")
    logger.log("train/loss", 2.0, samples_seen=2, progress=0.2, update=2)
    assert len(load_metrics(tmp_path)) == 2
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"
    assert len(logger.frame()) == 2


def test_log_many_rejects_mismatched_class_ids(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    with pytest.raises(ValueError, match="3 values but 2 class ids"):
        logger.log_many("buffer/class_count", [1, 2, 3], samples_seen=0, progress=0, update=0,
                        class_ids=[0, 1])


def test_loaders_give_one_line_errors(tmp_path):
    with pytest.raises(StreamSSLError, match="no such directory"):
        load_metrics(tmp_path / "missing")
    with pytest.raises(StreamSSLError, match=r"no metrics\.parquet \(not a run directory\?\)"):
        load_metrics(tmp_path)
    (tmp_path / "metrics.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(StreamSSLError, match="unreadable"):
        load_metrics(tmp_path)
    with pytest.raises(StreamSSLError, match=r"no run\.json"):
        load_run_info(tmp_path)
    (tmp_path / "run.json").write_text("[1, 2]")
    with pytest.raises(StreamSSLError, match="expected a JSON object"):
        load_run_info(tmp_path)
    pd.DataFrame({"metric": ["x"], "value": [1.0]}).to_parquet(tmp_path / "metrics.parquet")
    with pytest.raises(StreamSSLError, match="missing column"):
        load_metrics(tmp_path)
