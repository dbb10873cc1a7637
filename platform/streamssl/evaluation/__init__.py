"""Evaluation: kNN accuracy and linear probes of frozen features, run metrics on disk,
continual-learning summaries."""

from streamssl.evaluation.knn import knn_accuracy, knn_predict, protocol_name
from streamssl.evaluation.linear import linear_probe, protocol_name_linear
from streamssl.evaluation.metrics_log import MetricsLogger, NullLogger, load_metrics, load_run_info

__all__ = ["MetricsLogger", "NullLogger", "knn_accuracy", "knn_predict", "linear_probe", "load_metrics",
           "load_run_info", "protocol_name", "protocol_name_linear"]
