"""Running per-file ingest tasks on Ray Data (or in-process), results back in task order.

A task is a plain function `fn(spec: dict) -> dict[str, list]` returning flat columns (one entry
per sample or skip, `reason` empty for valid samples). Each task becomes one Ray Data row
whose columns are lists, so a shard of 13k samples travels as one Arrow row, and the driver
merges the results in task order: the manifest order never depends on scheduling.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterator
from functools import partial

import pandas as pd
import pyarrow as pa
from tqdm import tqdm

TaskFn = Callable[[dict], dict[str, list]]
# Below this much input, one process finishes in a few seconds: less than starting Ray (3-5 s).
PARALLEL_MIN_BYTES = 256 * 1024 * 1024


def want_ray(parallel: bool | None, num_tasks: int, input_bytes: int) -> bool:
    """Whether to use Ray Data: as asked, else for 2+ tasks over enough input or a running Ray."""
    if parallel is not None:
        return parallel
    ray = sys.modules.get("ray")  # not imported means not running; importing costs ~1 s
    running = ray is not None and ray.is_initialized()
    return num_tasks > 1 and (input_bytes >= PARALLEL_MIN_BYTES or running)


def _failure(spec: dict, err: Exception, schema: dict[str, pa.DataType]) -> dict[str, list]:
    """A task that raised reports one skip record instead of a traceback."""
    cols = {name: [None] for name in schema}
    cols.update(
        shard=[spec.get("name", "?")], key=[None], reason=[f"task failed: {type(err).__name__}: {err}"]
    )
    return cols


def run_one(spec: dict, fn: TaskFn, schema: dict[str, pa.DataType]) -> pa.Table:
    """Run one task, catching anything it raises (bad output included); returns its rows."""
    try:
        cols = fn(spec)
        return pa.table({name: pa.array(cols[name], t) for name, t in schema.items()})
    except Exception as err:  # the contract: never a traceback out of a task
        cols = _failure(spec, err, schema)
        return pa.table({name: pa.array(cols[name], t) for name, t in schema.items()})


def _ray_batch(batch: pa.Table, fn: TaskFn, schema: dict[str, pa.DataType]) -> pa.Table:
    """Ray Data map_batches body: each input row (a task spec) -> one row of list columns."""
    tasks = batch.column("task").to_pylist()
    tables = [run_one(json.loads(s), fn, schema) for s in batch.column("spec").to_pylist()]
    offsets = pa.array([0, *itertools.accumulate(t.num_rows for t in tables)], pa.int32())
    columns = {"task": pa.array(tasks, pa.int64())}
    for name, t in schema.items():
        values = pa.concat_arrays([table.column(name).combine_chunks() for table in tables])
        columns[name] = pa.ListArray.from_arrays(offsets, values.cast(t))
    return pa.table(columns)


def _iter_ray(fn: TaskFn, specs: list[dict], schema: dict) -> Iterator[tuple[int, pd.DataFrame]]:
    import ray.data

    from streamssl.ray_setup import init_ray

    init_ray()
    items = [{"task": i, "spec": json.dumps(s)} for i, s in enumerate(specs)]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(partial(_ray_batch, fn=fn, schema=schema), batch_size=1, batch_format="pyarrow")
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for r in range(batch.num_rows):
            row = batch.slice(r, 1)
            flat = {name: row.column(name)[0].values for name in schema}
            yield row.column("task")[0].as_py(), pa.table(flat).to_pandas()


def run_tasks(
    fn: TaskFn,
    specs: list[dict],
    schema: dict[str, pa.DataType],
    *,
    parallel: bool,
    weights: list[int] | None = None,
    desc: str = "ingest",
    unit: str = "file",
    bar_disable: bool | None = None,
) -> Iterator[pd.DataFrame]:
    """Run `fn` on every spec and yield each task's rows, strictly in spec order.

    Args:
        fn: module-level task function (Ray pickles it by reference).
        specs: JSON-serialisable task descriptions; `name` says where a failure happened.
        schema: output column -> Arrow type; must hold `shard`, `key` and `reason`.
        parallel: on Ray Data (one task per spec) or in this process.
        weights: progress-bar units per task (e.g. files in the chunk); default 1 each.
        desc, unit, bar_disable: progress bar settings (tqdm, on the driver).
    """
    weights = weights or [1] * len(specs)
    source = (
        _iter_ray(fn, specs, schema)
        if parallel
        else ((i, run_one(s, fn, schema).to_pandas()) for i, s in enumerate(specs))
    )
    pending: dict[int, pd.DataFrame] = {}
    next_task = 0
    with tqdm(total=sum(weights), desc=desc, unit=unit, disable=bar_disable) as bar:
        for task, frame in source:
            bar.update(weights[task])
            pending[task] = frame
            # preserve_order already delivers tasks in order; buffering makes it a guarantee.
            while next_task in pending:
                yield pending.pop(next_task)
                next_task += 1
