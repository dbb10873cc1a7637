"""The runs of an experiment as results: each run's status and, when completed, its loaded run
directory, grouped by cell (method, stream, grid values); shared by the CSV outputs and report.md."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from streamssl import fsio
from streamssl.errors import StreamSSLError
from streamssl.experiment import stats
from streamssl.experiment.schedule import run_dir, run_status
from streamssl.experiment.spec import ExperimentSpec, RunSpec, expand
from streamssl.report import Run, load_run


@dataclass
class Result:
    """One run of the matrix: its status and, when completed, the loaded run directory."""

    run: RunSpec
    status: str
    loaded: Run | None = None
    error: str = ""

    def value(self, key: str) -> float:
        """A summary scalar of the run in percent (NaN when not completed)."""
        return 100 * self.loaded.stats[key] if self.loaded is not None else float("nan")


def load_results(spec: ExperimentSpec, out: str | Path) -> list[Result]:
    """Every run of the matrix, in matrix order, loaded from OUT/runs."""
    results = []
    for run in expand(spec):
        path = run_dir(out, run)
        status = run_status(path)
        result = Result(run, status)
        if status == "completed":
            try:
                result.loaded = load_run(path)
            except StreamSSLError as err:  # completed but unreadable: report it, do not count it
                result.status, result.error = "unreadable", str(err)
        elif fsio.is_dir(path):
            result.error = _error_of(path)
        results.append(result)
    return results


def _error_of(path: str | Path) -> str:
    try:
        return str(fsio.read_json(fsio.join(path, "run.json")).get("error", ""))
    except (OSError, ValueError):
        return ""


def by_cell(results: list[Result]) -> dict[tuple, list[Result]]:
    cells: dict[tuple, list[Result]] = {}
    for result in results:
        cells.setdefault(result.run.cell_key, []).append(result)
    return cells


def grid_text(value) -> object:
    """A grid value as a CSV/table cell: scalars as they are, lists in YAML flow style."""
    if isinstance(value, (list, dict, tuple)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return value


def floor_interval(results: list[Result], stream: str, grid: tuple) -> stats.Interval:
    """The untrained floor of a stream and grid cell: each seed's kNN at samples_seen 0 (the runs of
    one seed share the initial backbone, so their values are averaged first), then over seeds."""
    per_seed = defaultdict(list)
    for r in results:
        if r.loaded is not None and r.run.stream == stream and r.run.grid == grid:
            per_seed[r.run.seed].append(r.value("untrained"))
    means = [float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for v in map(np.array, per_seed.values())]
    return stats.t_interval(means)
