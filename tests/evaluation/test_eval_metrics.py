"""Stream-progress summaries against hand computations."""

import numpy as np
import pandas as pd
import pytest

from streamssl.evaluation import metrics

N = np.nan
POINTS = [0, 250, 500, 750, 1000]  # samples seen; the stream has 1000 samples
TOP1 = [0.4, 0.5, 0.6, 0.55, 0.7]
# per-class accuracy at the trained evals (250..1000), 4 classes; NaN = class absent from test
CLASS_ACC = np.array([[0.8, 0.95, 0.1, N],
                      [0.6, 0.9, 0.2, 0.3],
                      [0.5, 0.7, 0.8, 0.2],
                      [0.4, 0.6, 0.9, 0.5]])
# classes the stream has shown by each trained eval: {0}, {0,1}, {0,1,2}, all
SEEN = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=bool)


def _rows(metric, value, samples, class_id=-1, protocol=""):
    return {"metric": metric, "value": value, "samples_seen": samples, "progress": samples / 1000,
            "update": samples // 10, "class_id": class_id, "protocol": protocol}


def _frame(with_seen=True):
    proto = "knn:scale k=50 euclidean uniform memory=100 test=100"
    rows = [_rows("eval/knn_top1", v, s, protocol=proto) for s, v in zip(POINTS, TOP1)]
    rows += [_rows("eval/knn_top1", 0.99, s, protocol="knn:cosine k=20") for s in POINTS]  # ignored
    rows += [_rows("eval/knn_class_acc", 0.3, 0, c, proto) for c in range(4)]  # untrained: left out
    for s, accs in zip(POINTS[1:], CLASS_ACC):
        rows += [_rows("eval/knn_class_acc", a, s, c, proto) for c, a in enumerate(accs)]
    if with_seen:
        for s, seen in zip(POINTS[1:], SEEN):
            rows += [_rows("stream/classes_seen", 10.0 * c + 1, s, c) for c in np.flatnonzero(seen)]
    rows += [_rows("train/loss", 1.0, s) for s in range(0, 1000, 100)]
    return pd.DataFrame(rows)


def test_scalar_summaries_match_hand_computation():
    stats = metrics.summarize(_frame(), num_classes=4)
    assert stats["protocol"].startswith("knn:scale")
    assert stats["final"] == pytest.approx(0.7)
    assert stats["at_fraction"] == pytest.approx(0.5)  # first eval at or after 20% is at 25%
    assert stats["untrained"] == pytest.approx(0.4)
    # trapezoid: 0.25 * (0.45 + 0.55 + 0.575 + 0.625)
    assert stats["auc"] == pytest.approx(0.55)
    # c0: 0.8-0.4, c1: 0.9-0.6 (0.95 came before class 1 was seen), c2: 0.8-0.9, c3: none earlier
    assert stats["forgetting"] == pytest.approx((0.4 + 0.3 - 0.1) / 3)
    assert stats["seen_acc"] == pytest.approx((0.8 + 0.75 + (0.5 + 0.7 + 0.8) / 3 + 0.6) / 4)
    assert stats["evals"] == 5


def test_without_classes_seen_rows_every_earlier_point_counts():
    stats = metrics.summarize(_frame(with_seen=False), num_classes=4)
    # c0 0.4, c1 0.95-0.6, c2 -0.1, c3 0.3-0.5
    assert stats["forgetting"] == pytest.approx((0.4 + 0.35 - 0.1 - 0.2) / 4)
    assert np.isnan(stats["seen_acc"])


def test_forgetting_per_class():
    mean, per_class = metrics.forgetting(CLASS_ACC, SEEN)
    np.testing.assert_allclose(per_class, [0.4, 0.3, -0.1, N])
    assert mean == pytest.approx(0.2)


def test_value_at_progress_tolerates_float_rounding_and_missing_points():
    progress = np.array([0.0, 0.1, 0.19999999999, 0.3])
    assert metrics.value_at_progress(progress, [1, 2, 3, 4], 0.2) == 3
    assert np.isnan(metrics.value_at_progress(progress, [1, 2, 3, 4], 0.5))


def test_area_under_curve_is_a_mean_over_the_covered_span():
    assert metrics.area_under_curve([0.0, 1.0], [0.2, 0.6]) == pytest.approx(0.4)
    assert metrics.area_under_curve([1.0, 0.5, 0.0], [1.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert metrics.area_under_curve([0.5, 1.0], [0.2, 0.6]) == pytest.approx(0.4)
    assert np.isnan(metrics.area_under_curve([0.3], [0.5]))


def test_untrained_needs_an_eval_at_zero():
    assert metrics.untrained_value([0, 10], [0.3, 0.5]) == 0.3
    assert np.isnan(metrics.untrained_value([5, 10], [0.3, 0.5]))


def test_seen_class_accuracy_ignores_unseen_and_unmeasured():
    assert metrics.seen_class_accuracy([0.2, 0.4, N, 0.9], [True, True, True, False]) == pytest.approx(0.3)
    assert np.isnan(metrics.seen_class_accuracy([0.2, 0.4], [False, False]))


def test_seen_at_uses_latest_rows_at_or_before_each_point():
    frame = pd.DataFrame([_rows("stream/classes_seen", 3.0, 100, 0),
                          _rows("stream/classes_seen", 5.0, 300, 2)])
    seen = metrics.seen_at(frame, np.array([50, 100, 200, 300, 400]), 3)
    np.testing.assert_array_equal(seen, [[0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 1], [1, 0, 1]])
