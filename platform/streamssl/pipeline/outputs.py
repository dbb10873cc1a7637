"""What a finished run adds to its directory after training: continual-learning matrices, tracker
mirrors, and the run.json fields they give (kept apart from pipeline/run.py, which orchestrates).

Trackers (`tracking.*`, streamssl.tracking) are opened by the driver only, once the run ends: the
flattened resolved config as params, every row of metrics.parquet (step = samples_seen), then
report.md and the figures as artifacts. The driver is the one process every path shares (a single
run, an experiment's run task, a Tune trial), whereas rank 0 may live on another node; Parquet
stays the source of truth and the tracker a copy of it.
"""

from __future__ import annotations

import logging

from streamssl import fsio
from streamssl.config import RunConfig, flatten
from streamssl.evaluation import continual
from streamssl.evaluation.metrics_log import RUN_INFO_FILE, load_metrics
from streamssl.report import FIGURE_FILES
from streamssl.tracking import Trackers
from streamssl.validation import tracking_settings

log = logging.getLogger(__name__)

ARTIFACTS = ("report.md", RUN_INFO_FILE, *FIGURE_FILES, continual.HEATMAP_FILE, continual.SEGMENT_FILE,
             continual.ACC_FILE)


def continual_fields(run_dir: str) -> dict:
    """acc_matrix.csv (and segment matrix + heatmap for segmented streams); run.json's bwt, fwt,
    stability_min. A run that logged no per-class kNN gives {}."""
    return continual.write_continual(run_dir)


def mirror_to_trackers(config: RunConfig, run_dir: str, status: str) -> dict[str, str]:
    """Copy a finished run into the configured trackers; {tracker: its run id} ({} when none)."""
    settings = tracking_settings(config)
    if not settings.enabled:
        return {}
    trackers = Trackers(settings, config.name, flatten(config.to_dict()), run_dir)
    try:
        if fsio.is_file(fsio.join(run_dir, "metrics.parquet")):
            trackers.log_rows(load_metrics(run_dir).to_dict("records"))
        trackers.log_artifacts(fsio.join(run_dir, name) for name in ARTIFACTS)
    finally:
        trackers.close(status)
    log.info("run mirrored to %s", ", ".join(f"{k} ({v})" for k, v in trackers.run_ids.items()))
    return trackers.run_ids
