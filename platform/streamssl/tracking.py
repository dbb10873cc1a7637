"""Experiment trackers: MLflow and Weights & Biases mirrors of a run's metrics (Parquet stays the
source of truth; a tracker only receives copies).

Both libraries are optional extras (`pip install 'streamssl[tracking]'`). A tracker receives the
resolved config as flat params at the start, metric rows at every metrics flush (step =
samples_seen; per-class rows as `metric/class_<id>`, as in TensorBoard), the report and figures as
artifacts at the end, and the run's final status. Only rank 0 (or the driver) opens trackers.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamssl import fsio
from streamssl.errors import ConfigError
from streamssl.filesystems import is_uri

WANDB_MODES = ("offline", "online")


@dataclass(frozen=True)
class TrackingSettings:
    """The pipeline's `tracking.*` keys."""

    mlflow_uri: str | None = None  # any MLflow tracking URI, e.g. sqlite:///mlflow.db or http://host:5000
    mlflow_experiment: str = "streamssl"
    wandb: str | None = None  # offline | online
    wandb_project: str = "streamssl"
    run_name: str | None = None  # default: the run's name

    def validate(self) -> None:
        if self.wandb is not None and self.wandb not in WANDB_MODES:
            raise ConfigError(f"tracking.wandb: one of {', '.join(WANDB_MODES)}, got {self.wandb!r}")
        if self.mlflow_uri is not None and not str(self.mlflow_uri).strip():
            raise ConfigError("tracking.mlflow_uri: empty; give a tracking URI such as sqlite:///mlflow.db")

    @property
    def enabled(self) -> bool:
        return self.mlflow_uri is not None or self.wandb is not None


def require(module: str, key: str):
    """Import an optional tracker library, or a one-line error naming the key that asked for it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{key}: needs the optional package `{module}`, which is not installed "
                          f"(pip install 'streamssl[tracking]')") from None


def check_available(settings: TrackingSettings) -> None:
    """Fail before any work when a configured tracker's library is missing."""
    settings.validate()
    if settings.mlflow_uri is not None:
        require("mlflow", "tracking.mlflow_uri")
    if settings.wandb is not None:
        require("wandb", "tracking.wandb")


def metric_points(rows: Iterable[dict]) -> list[tuple[str, float, int]]:
    """(name, value, step) per finite metric row; per-class rows become `metric/class_<id>`."""
    points = []
    for row in rows:
        value = row.get("value")
        if value is None or not math.isfinite(float(value)):
            continue
        name = row["metric"]
        class_id = row.get("class_id")
        if class_id is not None and not (isinstance(class_id, float) and math.isnan(class_id)) and class_id >= 0:
            name = f"{name}/class_{int(class_id)}"
        points.append((name, float(value), int(row.get("samples_seen") or 0)))
    return points


class Trackers:
    """The configured trackers of one run, fed together; a no-op when none is configured."""

    def __init__(self, settings: TrackingSettings, run_name: str, params: dict[str, Any], run_dir: Path) -> None:
        check_available(settings)
        name = settings.run_name or run_name
        self._sinks = []
        if settings.mlflow_uri is not None:
            self._sinks.append(_MLflow(settings, name, params))
        if settings.wandb is not None:
            self._sinks.append(_WandB(settings, name, params, run_dir))

    def log_rows(self, rows: Iterable[dict]) -> None:
        points = metric_points(rows)
        for sink in self._sinks:
            sink.log(points)

    def log_artifacts(self, paths: Iterable[str | Path]) -> None:
        """Files that exist, from a local run dir or (copied to the cache first) object storage."""
        files = [Path(fsio.local_copy(p)) for p in paths if fsio.is_file(p)]
        for sink in self._sinks:
            sink.artifacts(files)

    def close(self, status: str) -> None:
        for sink in self._sinks:
            sink.close(status)

    @property
    def run_ids(self) -> dict[str, str]:
        return {sink.kind: sink.run_id for sink in self._sinks}


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."  # MLflow's limit is 6,000; keep rows short


class _MLflow:
    kind = "mlflow"

    def __init__(self, settings: TrackingSettings, name: str, params: dict[str, Any]) -> None:
        mlflow = require("mlflow", "tracking.mlflow_uri")
        from mlflow.entities import Param

        self._client = mlflow.MlflowClient(tracking_uri=settings.mlflow_uri)
        experiment = self._client.get_experiment_by_name(settings.mlflow_experiment)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self._client.create_experiment(settings.mlflow_experiment))
        self.run_id = self._client.create_run(experiment_id, run_name=name).info.run_id
        items = [Param(k, _param_value(v)) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._client.log_batch(self.run_id, params=items[start:start + 100])

    def log(self, points: list[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(name, value, 0, step) for name, value, step in points]
        for start in range(0, len(metrics), 1000):
            self._client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def artifacts(self, files: list[Path]) -> None:
        for path in files:
            self._client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        done = {"completed": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
        self._client.set_terminated(self.run_id, status=done)


class _WandB:
    kind = "wandb"

    def __init__(self, settings: TrackingSettings, name: str, params: dict[str, Any], run_dir: str | Path) -> None:
        wandb = require("wandb", "tracking.wandb")
        # W&B writes its files locally; a run dir in object storage gets them uploaded at close
        self._local = fsio.cache_dir("wandb", fsio.name(run_dir)) if is_uri(run_dir) else fsio.normpath(run_dir)
        self._target = fsio.join(run_dir, "wandb") if is_uri(run_dir) else None
        fsio.makedirs(self._local)
        self._run = wandb.init(project=settings.wandb_project, name=name, mode=settings.wandb,
                               dir=self._local, config=params, reinit="create_new")
        self._run.define_metric("*", step_metric="samples_seen")  # rows of one step may span flushes
        self.run_id = self._run.id

    def log(self, points: list[tuple[str, float, int]]) -> None:
        by_step: dict[int, dict[str, float]] = {}
        for name, value, step in points:
            by_step.setdefault(step, {})[name] = value
        for step in sorted(by_step):
            self._run.log({**by_step[step], "samples_seen": step})

    def artifacts(self, files: list[Path]) -> None:
        for path in files:
            self._run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, status: str) -> None:
        self._run.finish(exit_code=0 if status == "completed" else 1)
        if self._target is not None:
            fsio.upload_tree(fsio.join(self._local, "wandb"), self._target)
