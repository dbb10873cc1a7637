"""`streamssl stream` as a function: load a prepared dataset, plan, materialize, write the index."""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from streamssl import fsio
from streamssl.errors import ConfigError
from streamssl.ray_setup import init_ray
from streamssl.streams.materialize import materialize, planned_table, remove_outputs
from streamssl.streams.plan import order_keys, plan_sha256, plan_stream
from streamssl.streams.virtual import index_source, virtual_index_parts

DEFAULT_SHARD_SIZE = 5000
INDEX_ROW_GROUP = 16384


def build_stream(dataset_dir: str, out_dir: str, *, kind: str, samples_per_class=None,
                 blend_ratio: float = 0.5, class_order=None, label_column: str = "label",
                 classes_per_segment: int = 1, order_by: str | None = None, seed: int = 0,
                 shard_size: int = DEFAULT_SHARD_SIZE, strict: bool = False, progress: bool = True,
                 args: dict | None = None, address: str | None = None, virtual: bool = False) -> dict:
    """Plan a stream over a prepared dataset and materialize it into `out_dir` (or only index it).

    Args:
        dataset_dir: a `streamssl prepare` output folder.
        out_dir: the stream folder (stream-*.tar, index.parquet, stream.json; see docs/formats.md).
        kind, samples_per_class, blend_ratio, class_order, classes_per_segment, seed: as in
            `plan_stream`; class_order may also name a file of class ids or names.
        label_column: manifest column the stream segments by (e.g. `coarse_label`).
        order_by: manifest column sorting the `custom` kind, ascending; `-COLUMN` sorts descending;
            `A,B` sorts by A, ties by B.
        shard_size: samples per stream shard.
        strict: stop at the first bad sample.
        args: the command line's arguments, recorded in stream.json.
        address: Ray cluster to join (default: the running Ray, else a local one).
        virtual: write only index.parquet and stream.json, pointing into the dataset's shards
            (`streams.virtual`); no Ray, no image bytes copied.

    Returns:
        The stream.json dict.
    """
    from streamssl.ingest.reader import label_info, load_dataset_info, read_manifest, shard_root

    if not fsio.is_dir(dataset_dir):
        raise ConfigError(f"DATASET_DIR: {dataset_dir} is not a folder")
    # Ray workers may run in another working directory: they get absolute paths
    dataset_dir, out_dir = fsio.absolute(dataset_dir), fsio.absolute(out_dir)
    info = load_dataset_info(dataset_dir)
    manifest = read_manifest(dataset_dir, columns=_plan_columns(dataset_dir, order_by) if virtual else None)
    labels = _label_column(manifest, label_column)
    names = (label_info(info, label_column) or {}).get("class_names")
    if kind != "custom" and order_by is not None:
        raise ConfigError("--order-by: only the custom kind orders by a column")
    plan = plan_stream(labels, kind, samples_per_class=samples_per_class, blend_ratio=blend_ratio,
                       class_order=load_class_order(class_order, names), seed=seed,
                       classes_per_segment=classes_per_segment,
                       order_by=None if order_by is None else _order_column(manifest, order_by))
    root = shard_root(dataset_dir, info)
    if virtual:
        source_bytes = _write_virtual(dataset_dir, out_dir, plan, str(root), label_column)
        stream_labels, skipped = labels[plan], []
    else:
        table = planned_table(manifest, plan, root, label_column)
        init_ray(address=address)  # only now: argument errors above must not wait for Ray
        stream_labels, skipped = _write_materialized(table, out_dir, shard_size, strict, progress)
    summary = _stream_json(stream_labels, skipped, names, plan=plan, kind=kind, seed=seed, dataset_dir=dataset_dir,
                           label_column=label_column, classes_per_segment=classes_per_segment,
                           shard_size=0 if virtual else shard_size, args=args or {})
    summary["virtual"] = virtual
    if virtual:  # sizes the read tasks without reading every row's nbytes (`virtual.virtual_chunks`)
        summary["source_bytes"] = source_bytes
    # whole or absent: a run's stream cache takes a folder with stream.json as finished
    fsio.write_text(fsio.join(out_dir, "stream.json"), json.dumps(summary, indent=1))
    if skipped:
        first = skipped[0]
        print(f"warning: skipped {len(skipped)} bad sample(s), first {first['shard']} key {first['key']}: "
              f"{first['reason']} (all listed in {out_dir}/stream.json)", file=sys.stderr)
    return summary


def _write_materialized(table, out_dir: str, shard_size: int, strict: bool, progress: bool):
    """(stream labels, skipped samples) of the stream shards and index written from the planned table."""
    index, skipped = materialize(table, out_dir, shard_size=shard_size, strict=strict, progress=progress)
    with fsio.atomic_path(fsio.join(out_dir, "index.parquet")) as tmp:
        pq.write_table(index, tmp)
    return index["label"].to_numpy(), skipped


def _write_virtual(dataset_dir: str, out_dir: str, plan: np.ndarray, root: str, label_column: str) -> int:
    """A virtual stream's index (`streams.virtual`); returns the sum of its rows' `nbytes`."""
    _remove_stream(out_dir)
    source = index_source(fsio.join(dataset_dir, "manifest.parquet"), label_column)
    parts = virtual_index_parts(source, plan, root, label_column, 64 * INDEX_ROW_GROUP)
    return _write_parts(parts, fsio.join(out_dir, "index.parquet"))


def _write_parts(parts, path: str) -> int:
    """A virtual index written while its next part is gathered (Arrow's take and Parquet's writer
    both run without the GIL: about 2 s less at 13M rows than one after the other); returns the
    sum of its `nbytes`. Small row groups: a virtual stream's read task reads its own rows;
    statistics only on `pos`, which `virtual._fill_keys` filters on (min/max of 13M keys cost
    about a second)."""
    total = 0
    with fsio.atomic_path(path) as tmp, ThreadPoolExecutor(1) as pool:
        pending, writer = pool.submit(next, parts, None), None
        while (part := pending.result()) is not None:
            pending = pool.submit(next, parts, None)
            writer = writer or pq.ParquetWriter(tmp, part.schema, write_statistics=["pos"])
            writer.write_table(part, row_group_size=INDEX_ROW_GROUP)
            total += pc.sum(part["nbytes"]).as_py() or 0
        writer.close()
    return total


def _plan_columns(dataset_dir: str, order_by: str | None) -> list[str]:
    """The manifest columns planning reads: label columns and the order_by columns. At ImageNet-21K
    size the per-sample strings (keys, shard names) would cost seconds and gigabytes in pandas."""
    from streamssl.streams.plan import parse_order_keys

    named = {name for name, _ in parse_order_keys(order_by)} if order_by else set()
    return [c for c in fsio.parquet_columns(fsio.join(dataset_dir, "manifest.parquet"))
            if c in named or c == "label" or c.endswith("_label")]


def _remove_stream(out_dir: str) -> None:
    """An empty or earlier-stream folder made ready for a virtual stream (never a dataset)."""
    fsio.makedirs(out_dir)
    remove_outputs(out_dir)


def _label_column(manifest: pd.DataFrame, name: str) -> np.ndarray:
    if name not in manifest.columns or name.endswith("_name"):
        have = ", ".join(c for c in manifest.columns if c == "label" or c.endswith("_label"))
        raise ConfigError(f"--label-column: unknown column {name!r} (label columns: {have})")
    if not pd.api.types.is_integer_dtype(manifest[name]):
        raise ConfigError(f"--label-column: column {name!r} is not an integer label")
    return manifest[name].to_numpy(np.int64)


def _order_column(manifest: pd.DataFrame, spec: str) -> list[np.ndarray]:
    """The sort keys of `--order-by COLUMN[,COLUMN...]` (`-COLUMN`: descending), see `plan.order_keys`."""
    scores = [c for c in manifest.columns if c.startswith("difficulty")]
    have = f"score columns: {', '.join(scores)}" if scores else "no score columns yet"
    return order_keys(manifest, spec, f"{have}; `streamssl score DATASET_DIR --by loss|class-distance` adds "
                                      "difficulty_loss / difficulty_class_distance, `streamssl columns` joins others")


def load_class_order(class_order, names: list[str] | None = None):
    """natural / random / None pass through; a path becomes a list of class ids.

    The file lists classes one per line (or separated by commas or spaces), as ids or names.
    """
    if class_order is None or not isinstance(class_order, (str, os.PathLike)) or class_order in (
            "natural", "random"):
        return class_order
    try:
        tokens = fsio.read_text(class_order).replace(",", " ").split()
    except OSError as err:
        raise ConfigError(f"--class-order: cannot read {class_order} ({err.strerror})") from None
    lookup = {name: i for i, name in enumerate(names or [])}
    ids = []
    for token in tokens:
        if token.lstrip("-").isdigit():
            ids.append(int(token))
        elif token in lookup:
            ids.append(lookup[token])
        else:
            raise ConfigError(f"--class-order: {class_order}: {token!r} is not a class id or name")
    if not ids:
        raise ConfigError(f"--class-order: {class_order} lists no classes")
    return ids


def _stream_json(labels: np.ndarray, skipped, names, *, plan, kind, seed, dataset_dir, label_column,
                 classes_per_segment, shard_size, args) -> dict:
    # classes in order of first appearance, by hashing (np.unique's sort of 13M labels takes a second)
    codes, classes = pd.factorize(labels)
    counts = np.bincount(codes, minlength=len(classes))
    return {
        "kind": kind, "seed": seed, "args": args, "dataset_dir": fsio.absolute(dataset_dir),
        "label_column": label_column, "classes_per_segment": classes_per_segment,
        "num_samples": int(len(labels)), "planned_samples": int(len(plan)),
        "num_classes": int(len(classes)),
        "class_order": [int(c) for c in classes],
        "class_counts": [int(c) for c in counts],
        "class_names": names, "plan_sha256": plan_sha256(plan), "shard_size": shard_size,
        "num_shards": -(-len(plan) // shard_size) if shard_size else 0, "skipped": skipped,
    }
