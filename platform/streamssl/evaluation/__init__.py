"""Evaluation: kNN accuracy of frozen features, run metrics on disk, continual-learning summaries."""

from streamssl.evaluation.knn import knn_accuracy, knn_predict, protocol_name
from streamssl.evaluation.metrics_log import MetricsLogger, load_metrics, load_run_info

__all__ = ["MetricsLogger", "knn_accuracy", "knn_predict", "load_metrics", "load_run_info", "protocol_name"]
