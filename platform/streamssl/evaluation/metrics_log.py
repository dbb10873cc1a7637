"""Run-directory metrics: rows buffered in memory, written as metrics.parquet, metrics.csv and
TensorBoard events (docs/formats.md, "Run directory").

`MetricsLogger.log` only appends to in-memory lists, so it is cheap enough to call per update;
files are written at `flush` / `close`, and automatically every `flush_seconds`. metrics.parquet is
rewritten whole and metrics.csv extended through a temporary copy (both atomically, `streamssl.fsio`),
so each is always a complete, readable file; the event files are appended to. TensorBoard's pure-Python event writer is
the slow part (about 50-80 us a row here), which is why it runs at flush time, not in `log`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from streamssl import fsio
from streamssl.errors import StreamSSLError, first_line

METRICS_FILE = "metrics.parquet"
CSV_FILE = "metrics.csv"
RUN_INFO_FILE = "run.json"

SCHEMA = pa.schema([
    ("metric", pa.string()),
    ("value", pa.float64()),
    ("samples_seen", pa.int64()),
    ("progress", pa.float64()),
    ("update", pa.int64()),
    ("class_id", pa.int64()),
    ("protocol", pa.string()),
])
COLUMNS = SCHEMA.names


class MetricsLogger:
    """Collects metric rows for one run and writes them into its run directory.

    Args:
        run_dir: the run directory (created if missing).
        run_info: the run.json content to write (and rewrite at every flush, so that
            `update_info` changes such as status land on disk); None leaves run.json alone.
        flush_seconds: write automatically when this long has passed since the last write.
        tensorboard: also write TensorBoard scalars (tag = metric, per-class rows as
            `metric/class_<id>`, step = samples_seen).
    """

    def __init__(self, run_dir: str | os.PathLike, run_info: dict | None = None, *,
                 flush_seconds: float = 60.0, tensorboard: bool = True):
        self.run_dir = os.fspath(run_dir)
        fsio.makedirs(self.run_dir)
        self.run_info = None if run_info is None else dict(run_info)
        self.flush_seconds = flush_seconds
        self._pending: dict[str, list] = {name: [] for name in COLUMNS}
        self._written: list[pd.DataFrame] = []
        self._last_flush = time.monotonic()
        self._writer = _tensorboard_writer(self.run_dir) if tensorboard else None
        self._closed = False
        self._write_run_info()

    def log(self, metric: str, value: float, *, samples_seen: int, progress: float, update: int,
            class_id: int = -1, protocol: str = "") -> None:
        """Buffer one row (see docs/formats.md for the columns)."""
        pending = self._pending
        pending["metric"].append(metric)
        pending["value"].append(float(value))
        pending["samples_seen"].append(int(samples_seen))
        pending["progress"].append(float(progress))
        pending["update"].append(int(update))
        pending["class_id"].append(int(class_id))
        pending["protocol"].append(protocol)
        self._maybe_flush()

    def log_many(self, metric: str, values, *, samples_seen: int, progress: float, update: int,
                 class_ids=None, protocol: str = "") -> None:
        """Buffer one row per class: values [C] (NaN allowed), class_ids [C] (default 0..C-1)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        ids = np.arange(len(values)) if class_ids is None else np.asarray(class_ids).ravel()
        if len(ids) != len(values):
            raise ValueError(f"log_many({metric!r}): {len(values)} values but {len(ids)} class ids")
        n = len(values)
        pending = self._pending
        pending["metric"].extend([metric] * n)
        pending["value"].extend(values.tolist())
        pending["samples_seen"].extend([int(samples_seen)] * n)
        pending["progress"].extend([float(progress)] * n)
        pending["update"].extend([int(update)] * n)
        pending["class_id"].extend(ids.astype(np.int64).tolist())
        pending["protocol"].extend([protocol] * n)
        self._maybe_flush()

    def resume(self, rows: pd.DataFrame | None) -> None:
        """Start from the rows of an interrupted run (up to its checkpoint) and rewrite the files."""
        if rows is None or rows.empty:
            return
        self._written = [rows[list(COLUMNS)].reset_index(drop=True)]
        _write_parquet_atomic(self._written[0], fsio.join(self.run_dir, METRICS_FILE))
        _write_csv_atomic(self._written[0], fsio.join(self.run_dir, CSV_FILE), append=False)

    def update_info(self, **fields) -> None:
        """Change run.json fields (status, wall_seconds, ...); written at the next flush/close."""
        if self.run_info is None:
            self.run_info = {}
        self.run_info.update(fields)

    def frame(self) -> pd.DataFrame:
        """All rows logged so far (written or not), as a DataFrame with the formats.md columns."""
        return pd.concat([*self._written, _to_frame(self._pending)], ignore_index=True)

    def flush(self) -> None:
        """Write pending rows: rewrite metrics.parquet, append to metrics.csv and the event files."""
        new = _to_frame(self._pending)
        self._pending = {name: [] for name in COLUMNS}
        first_csv = not self._written  # after resume() the CSV already holds the earlier rows
        self._written = [pd.concat([*self._written, new], ignore_index=True)]  # one frame, not a growing list
        _write_parquet_atomic(self._written[0], fsio.join(self.run_dir, METRICS_FILE))
        _write_csv_atomic(new, fsio.join(self.run_dir, CSV_FILE), append=not first_csv)
        if self._writer is not None:
            _add_scalars(self._writer, new)
            self._writer.flush()
        self._write_run_info()
        self._last_flush = time.monotonic()

    def close(self, **final_info) -> None:
        """Flush and close; `final_info` (e.g. status="completed") is merged into run.json first."""
        if self._closed:
            return
        if final_info:
            self.update_info(**final_info)
        self.flush()
        if self._writer is not None:
            self._writer.close()
            if fsio.is_uri(self.run_dir):  # events were written to a local cache: upload them
                fsio.upload_tree(self._writer.log_dir, self.run_dir)
        self._closed = True

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def _write_run_info(self) -> None:
        if self.run_info is not None:
            _write_json_atomic(self.run_info, fsio.join(self.run_dir, RUN_INFO_FILE))


def _tensorboard_writer(run_dir: str):
    import tempfile

    from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when asked for

    # TensorBoard appends to its event file, which an object store cannot: a local cache, uploaded at close
    log_dir = tempfile.mkdtemp(dir=fsio.cache_dir("tensorboard")) if fsio.is_uri(run_dir) else run_dir
    # the default queue of 10 events makes every add_scalar wait on the writer thread
    return SummaryWriter(log_dir=log_dir, max_queue=4096)


def _to_frame(columns: dict[str, list]) -> pd.DataFrame:
    table = pa.table({name: pa.array(columns[name], type=SCHEMA.field(name).type) for name in COLUMNS})
    return table.to_pandas()


def _add_scalars(writer, frame: pd.DataFrame) -> None:
    rows = frame[np.isfinite(frame["value"].to_numpy())]
    for metric, class_id, value, step in zip(rows["metric"], rows["class_id"], rows["value"],
                                             rows["samples_seen"]):
        tag = metric if class_id < 0 else f"{metric}/class_{class_id}"
        writer.add_scalar(tag, value, global_step=int(step))


def _write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    with fsio.atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), tmp)


def _write_csv_atomic(frame: pd.DataFrame, path: Path, append: bool) -> None:
    """Rewrite the CSV through a temporary copy, so a reader never sees a half-written row."""
    with fsio.atomic_path(path) as tmp:
        if append and fsio.exists(path):
            fsio.copy(path, tmp)  # bytes only: far cheaper than formatting the old rows again
        frame.to_csv(tmp, mode="a" if append else "w", header=not append, index=False)


def _write_json_atomic(data: dict, path: Path) -> None:
    fsio.write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"run.json: cannot store {type(obj).__name__}")


def load_metrics(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Read RUN_DIR/metrics.parquet; StreamSSLError (one line) if absent, unreadable or malformed."""
    path = fsio.join(run_dir, METRICS_FILE)
    if not fsio.is_dir(run_dir):
        raise StreamSSLError(f"{run_dir}: no such directory")
    if not fsio.is_file(path):
        raise StreamSSLError(f"{run_dir}: no {METRICS_FILE} (not a run directory?)")
    try:
        frame = fsio.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as err:
        raise StreamSSLError(f"{path}: unreadable ({first_line(err)})") from err
    missing = [name for name in COLUMNS if name not in frame.columns]
    if missing:
        raise StreamSSLError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def load_run_info(run_dir: str | os.PathLike) -> dict:
    """Read RUN_DIR/run.json; StreamSSLError (one line) if absent or not a JSON object."""
    path = fsio.join(run_dir, RUN_INFO_FILE)
    if not fsio.is_file(path):
        raise StreamSSLError(f"{run_dir}: no {RUN_INFO_FILE} (not a run directory?)")
    try:
        info = fsio.read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StreamSSLError(f"{path}: unreadable ({first_line(err)})") from err
    if not isinstance(info, dict):
        raise StreamSSLError(f"{path}: expected a JSON object, got {type(info).__name__}")
    return info



class NullLogger:
    """Stands in for MetricsLogger on workers that do not write metrics (ranks other than 0)."""

    def log(self, *args, **kwargs) -> None:
        return None

    def log_many(self, *args, **kwargs) -> None:
        return None

    def flush(self) -> None:
        return None

    def close(self, **final_info) -> None:
        return None
