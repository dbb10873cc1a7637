"""Continual-learning metrics: acc_matrix.csv, segment_matrix.csv (R), BWT / FWT recomputed by hand from
the CSV, stability minima, segment-end evaluation points, and the writer on a real tiny run."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from streamssl.evaluation import MetricsLogger
from streamssl.evaluation.continual import (
    read_segment_csv,
    resolve_points,
    segment_ends,
    segment_points,
    write_continual,
)

# 3 segments of 2 classes each (class order 4 5 | 0 1 | 2 3), 10 samples per class, so the segment
# ends are at 20, 40 and 60 samples. Per-class accuracy (%) at each evaluation, planted by hand:
CLASS_ORDER = [4, 5, 0, 1, 2, 3]
PLANTED = {  # samples_seen -> accuracy of classes 0..5
    0: [10, 20, 30, 40, 50, 60],
    20: [15, 25, 30, 50, 90, 80],  # end of segment 1 (classes 4, 5)
    30: [40, 40, 30, 50, 20, 30],  # mid segment 2: segment 1 dips to 25 (the stability gap)
    45: [70, 90, 35, 45, 60, 60],  # first evaluation after segment 2's end (40), within one round
    60: [60, 80, 75, 85, 50, 70],  # end of segment 3
}


def write_run(run_dir, stream_dir, planted=PLANTED, stream_batch=10):
    """A run dir with a metrics log of the planted per-class accuracies and its stream.json."""
    stream_dir.mkdir(parents=True, exist_ok=True)
    stream = {"kind": "seq", "class_order": CLASS_ORDER, "class_counts": [10] * 6, "classes_per_segment": 2,
              "num_samples": 60}
    (stream_dir / "stream.json").write_text(json.dumps(stream))
    with MetricsLogger(run_dir, {"num_classes": 6, "stream_dir": str(stream_dir), "stream_samples": 60},
                       tensorboard=False) as logger:
        for seen, acc in planted.items():
            at = {"samples_seen": seen, "progress": seen / 60, "update": seen}
            logger.log("eval/knn_top1", float(np.mean(acc)) / 100, protocol="knn:scale k=5", **at)
            logger.log_many("eval/knn_class_acc", np.array(acc) / 100, protocol="knn:scale k=5", **at)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"learner": {"stream_batch": stream_batch}}))


def test_bwt_and_fwt_recomputed_by_hand_from_the_csv(tmp_path):
    write_run(tmp_path / "run", tmp_path / "stream")
    out = write_continual(tmp_path / "run")
    lines = (tmp_path / "run" / "segment_matrix.csv").read_text().splitlines()
    assert lines[0] == "after_segment,1,2,3"
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1", "2", "3"]
    r = read_segment_csv(tmp_path / "run" / "segment_matrix.csv")
    # R[i][j]: mean over segment j's classes (1: classes 4, 5; 2: 0, 1; 3: 2, 3) after segment i
    expected = np.array([[55, 15, 35], [85, 20, 40], [60, 80, 40], [60, 70, 80]], dtype=float)
    np.testing.assert_allclose(r, expected)
    bwt = ((r[3, 0] - r[1, 0]) + (r[3, 1] - r[2, 1])) / 2  # j = 1, 2 < T = 3
    fwt = ((r[1, 1] - r[0, 1]) + (r[2, 2] - r[0, 2])) / 2  # j = 2, 3
    assert out["bwt"] == pytest.approx(bwt) == pytest.approx(-17.5)
    assert out["fwt"] == pytest.approx(fwt) == pytest.approx(5.0)
    assert out["segment_rows"] == [0, 20, 45, 60] and out["continual_notes"] == []
    # segment 1 falls to 25 at 30 samples; segment 2's lowest from 40 on is 70 at 60; segment 3 only at 60
    assert out["stability_min"] == pytest.approx([25.0, 70.0, 80.0])
    assert (tmp_path / "run" / "segment_matrix.png").stat().st_size > 0


def test_acc_matrix_has_a_row_per_evaluation_and_a_column_per_class(tmp_path):
    write_run(tmp_path / "run", tmp_path / "stream")
    write_continual(tmp_path / "run")
    acc = pd.read_csv(tmp_path / "run" / "acc_matrix.csv")
    assert list(acc.columns) == ["samples_seen", "0", "1", "2", "3", "4", "5"]
    assert acc["samples_seen"].tolist() == sorted(PLANTED)
    np.testing.assert_allclose(acc.drop(columns="samples_seen").to_numpy(), np.array(list(PLANTED.values())))


def test_a_segment_end_without_an_evaluation_leaves_its_row_missing_and_says_why(tmp_path):
    planted = {k: v for k, v in PLANTED.items() if k != 45}  # 60 is more than a round past 40
    write_run(tmp_path / "run", tmp_path / "stream", planted)
    out = write_continual(tmp_path / "run")
    r = read_segment_csv(tmp_path / "run" / "segment_matrix.csv")
    assert np.isnan(r[2]).all() and out["segment_rows"] == [0, 20, -1, 60]
    assert out["bwt"] is None and out["fwt"] is None  # they need R[2][2]; None keeps run.json valid JSON
    assert any("segment 2" in note and "eval.points: segments" in note for note in out["continual_notes"])
    json.dumps(out, allow_nan=False)


def test_segment_ends_and_points_follow_uneven_counts_and_the_consumed_samples(tmp_path):
    stream = {"kind": "seq-im", "class_order": [2, 0, 1], "class_counts": [50, 25, 50], "classes_per_segment": 1,
              "num_samples": 125}
    assert segment_ends(stream) == [50, 75, 125]
    assert segment_ends(stream, end=120) == [50, 75, 120]  # several workers leave a remainder unread
    (tmp_path / "stream.json").write_text(json.dumps(stream))
    fractions = segment_points(tmp_path)
    assert [int(round(f * 125)) for f in fractions] == [50, 75, 125]  # eval_positions' rounding gives them back
    assert resolve_points("segments", tmp_path) == [0.0, *fractions]  # the last end is the stream's end, 1.0
    assert resolve_points([0.5, "segments"], tmp_path) == sorted({0.0, 0.5, *fractions})
    assert resolve_points([0, 1], tmp_path) == [0, 1]
    (tmp_path / "stream.json").write_text(json.dumps({**stream, "kind": "iid"}))
    assert segment_points(tmp_path) == []


def test_a_real_tiny_run_writes_both_matrices(tmp_path, one_thread):
    from streamssl import config as cfgschema
    from streamssl import resolve as cfg
    from streamssl.train.evaluate import EvalData
    from streamssl.train.learner import Learner
    from streamssl.train.loop import LoopState, run_loop
    from streamssl.train.replay import total_updates

    stream_dir = tmp_path / "stream"
    stream_dir.mkdir()
    stream = {"kind": "seq", "class_order": [0, 1, 2, 3], "class_counts": [16] * 4, "classes_per_segment": 1,
              "num_samples": 64}
    (stream_dir / "stream.json").write_text(json.dumps(stream))
    points = resolve_points("segments", stream_dir)
    config = cfg.load("pipelines/smoke.yaml", ["method.crops=2", "learner.threads=1", "eval.linear=off",
                                               "eval.knn_k=5", f"eval.points={points}"])
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(24) % 4
    data = EvalData(torch.randint(0, 256, (24, 3, 16, 16), generator=g, dtype=torch.uint8), labels,
                    torch.randint(0, 256, (24, 3, 16, 16), generator=g, dtype=torch.uint8), labels.clone(), 4)
    rng = np.random.default_rng(0)
    batches = ({"image": rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8), "label": np.full(16, c),
                "key": np.array([f"c{c}_{i}" for i in range(16)], dtype=object), "pos": np.arange(16)}
               for c in range(4))  # one class per stream batch: a seq stream
    run_dir = tmp_path / "run"
    with MetricsLogger(run_dir, {"num_classes": 4, "stream_dir": str(stream_dir), "stream_samples": 64},
                       tensorboard=False) as logger:
        learner = Learner(config, torch.device("cpu"), total_updates(config, 64))
        run_loop(config, learner, batches, 64, data, logger, state=LoopState(), progress=False)
    cfgschema.dump(config, run_dir / "config.yaml")
    out = write_continual(run_dir)
    assert out["segment_rows"] == [0, 16, 32, 48, 64]
    assert len(pd.read_csv(run_dir / "acc_matrix.csv")) == 5
    r = read_segment_csv(run_dir / "segment_matrix.csv")
    assert r.shape == (5, 4) and np.isfinite(r).all()
    bwt = np.mean([r[4, j] - r[j + 1, j] for j in range(3)])
    fwt = np.mean([r[j, j] - r[0, j] for j in range(1, 4)])
    # the CSV holds 4 decimals
    assert out["bwt"] == pytest.approx(bwt, abs=1e-3) and out["fwt"] == pytest.approx(fwt, abs=1e-3)
    assert all(math.isfinite(v) for v in out["stability_min"])


def test_the_report_tabulates_bwt_fwt_and_links_the_heatmap(tmp_path):
    from streamssl.report import write_report

    run_dir = tmp_path / "run"
    write_run(run_dir, tmp_path / "stream")
    info = json.loads((run_dir / "run.json").read_text())
    info.update(method="imai", stream="seq", seed=0, status="completed", **write_continual(run_dir))
    (run_dir / "run.json").write_text(json.dumps(info))
    text = Path(write_report([run_dir], tmp_path / "report")).read_text()
    section = text[text.index("## Continual-learning metrics"):]
    assert "| `run` | imai | seq | 0 | -17.50 | +5.00 | 25.0, 70.0, 80.0 |" in section
    assert "![segment matrix: run](../run/segment_matrix.png)" in section
