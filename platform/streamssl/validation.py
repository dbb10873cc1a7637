"""Checks of a resolved RunConfig, one function per section; every failure names its key (exit 2).

`validate` needs the config alone (types are already checked by `config`; here: ranges, choices,
cross-key rules; the rules of the chosen method and policy are in `resolve`) and runs inside
`resolve.load`, so `run`, `submit`, `tune` and `demo` reject a bad pipeline before any work.
`check_before_work` needs the machine that runs the pipeline (data paths, GPUs, the Ray address)
and runs first in `run_pipeline`; `check_dataset` runs once the dataset is prepared. Library errors
met while preparing or streaming name the library's own argument; `dataset_key` and `stream_key`
map those names to pipeline keys (`errors.renamed`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from streamssl import fsio
from streamssl.checks import in_range, one_of, require
from streamssl.errors import ConfigError, renamed
from streamssl.optim import LR_SCALINGS
from streamssl.train.replay import SCHEDULES

if TYPE_CHECKING:
    from streamssl.config import RunConfig

STREAM_KINDS = ("iid", "seq", "seq-bl", "seq-im", "custom")
SEGMENT_POINTS = "segments"  # eval.points: the segment ends of a segmented stream
MIN_IMAGE_SIZE = 8  # cnn4 max-pools three times: a smaller input leaves no feature map


def validate(config: RunConfig) -> None:
    """Reject configs that would fail (or silently misbehave) later, before any work starts."""
    for check in (_top, _dataset, _stream, _model, _learner, _buffer, _eval, _scaling, _dedup, _checkpoint,
                  _tracking):
        check(config)


def _top(config: RunConfig) -> None:
    in_range("seed", config.seed, 0)  # numpy's SeedSequence takes no negative seed
    require(bool(config.name.strip()), "name: must not be empty")


def _dataset(config: RunConfig) -> None:
    from streamssl.ingest.build import SOURCES
    from streamssl.ingest.options import check_source_options

    ds = config.dataset
    require(ds.source in SOURCES, f"dataset.source: unknown source {ds.source!r} (choose from {', '.join(SOURCES)})")
    require(ds.dir is None or bool(ds.dir.strip()), "dataset.dir: must not be empty")
    with renamed(dataset_key):
        check_source_options(ds.source, ds.options)


def _stream(config: RunConfig) -> None:
    from streamssl.streams.plan import parse_order_keys

    s = config.stream
    one_of("stream.kind", s.kind, STREAM_KINDS)
    counts = s.samples_per_class if isinstance(s.samples_per_class, list) else [s.samples_per_class]
    require(len(counts) > 0, "stream.samples_per_class: an empty list; give a count or one per class")
    if s.samples_per_class is not None:
        for n in counts:
            require(isinstance(n, int) and not isinstance(n, bool) and n >= 1,
                    f"stream.samples_per_class: counts must be integers >= 1, got {n!r}")
    in_range("stream.blend_ratio", s.blend_ratio, 0, 1)  # seq-bl's swap windows must not overlap
    require(bool(s.class_order), "stream.class_order: natural, random or a file of class ids or names")
    require(bool(s.label_column), "stream.label_column: must name a manifest column")
    in_range("stream.classes_per_segment", s.classes_per_segment, 1)
    in_range("stream.seed", s.seed, 0, none_ok=True)
    require(isinstance(s.virtual, bool), f"stream.virtual: true or false, got {s.virtual!r}")
    if s.kind == "custom":
        require(s.order_by is not None, "stream.order_by: stream.kind custom needs a column to order by")
        with renamed({"order_by": "stream.order_by"}):
            parse_order_keys(s.order_by)
    else:
        require(s.order_by is None, f"stream.order_by: only stream.kind custom orders by a column (kind is {s.kind})")


def _model(config: RunConfig) -> None:
    from streamssl.models import BACKBONES

    m = config.model
    one_of("model.backbone", m.backbone, tuple(BACKBONES))
    in_range("model.image_size", m.image_size, MIN_IMAGE_SIZE)
    in_range("model.read_size", m.read_size, 1, none_ok=True)
    in_range("model.proj_hidden_dim", m.proj_hidden_dim, 1, none_ok=True)
    in_range("model.proj_dim", m.proj_dim, 1, none_ok=True)
    require(m.init_from is None or bool(m.init_from.strip()), "model.init_from: must not be empty")


def _learner(config: RunConfig) -> None:
    learner = config.learner
    in_range("learner.stream_batch", learner.stream_batch, 1)
    in_range("learner.k", learner.k, 1)
    in_range("learner.lr", learner.lr, 0, low_open=True)
    in_range("learner.momentum", learner.momentum, 0, 1, high_open=True)
    in_range("learner.weight_decay", learner.weight_decay, 0)
    in_range("learner.lars_eta", learner.lars_eta, 0, low_open=True)
    in_range("learner.threads", learner.threads, 1, none_ok=True)
    one_of("learner.schedule", learner.schedule, tuple(SCHEDULES))
    one_of("learner.lr_schedule", learner.lr_schedule, ("constant", "cosine"))
    one_of("learner.lr_scaling", learner.lr_scaling, LR_SCALINGS)
    in_range("learner.lr_reference_batch", learner.lr_reference_batch, 1)
    in_range("learner.warmup_updates", learner.warmup_updates, 0)
    one_of("learner.replay_weighting", learner.replay_weighting, ("uniform", "density"))
    require(learner.bf16 in ("auto", True, False), f"learner.bf16: auto, true or false, got {learner.bf16!r}")
    require(learner.replay or SCHEDULES[learner.schedule].stream_rows,
            "learner.replay: false needs learner.schedule accv (the minred schedule trains from the buffer only)")


def _buffer(config: RunConfig) -> None:
    buffer, batch = config.buffer, config.learner.stream_batch
    require(buffer.size >= batch, f"buffer.size: must be >= learner.stream_batch ({batch}), got {buffer.size}")
    in_range("buffer.ema_alpha", buffer.ema_alpha, 0, 1, high_open=True)
    in_range("buffer.protect_new", buffer.protect_new, 0)
    require(buffer.protect_new * batch <= buffer.size,
            f"buffer.protect_new: {buffer.protect_new} x learner.stream_batch ({batch}) protected samples "
            f"exceed buffer.size ({buffer.size})")


def _eval(config: RunConfig) -> None:
    ev = config.eval
    points = [ev.points] if isinstance(ev.points, str) else ev.points or []
    for point in points:
        if isinstance(point, str):
            require(point == SEGMENT_POINTS, f"eval.points: fractions in [0, 1] or {SEGMENT_POINTS!r}, got {point!r}")
        else:
            in_range("eval.points", point, 0, 1)
    in_range("eval.memory_samples", ev.memory_samples, 1)
    in_range("eval.test_samples", ev.test_samples, 1)
    in_range("eval.val_samples", ev.val_samples, 0)  # 0: no validation subset
    in_range("eval.batch_size", ev.batch_size, 1)
    in_range("eval.knn_k", ev.knn_k, 1)
    require(ev.knn_k <= ev.memory_samples,
            f"eval.knn_k: {ev.knn_k} neighbours need eval.memory_samples >= {ev.knn_k}, got {ev.memory_samples}")
    in_range("eval.knn_temperature", ev.knn_temperature, 0, low_open=True)
    one_of("eval.knn_protocol", ev.knn_protocol, ("scale", "cosine"))
    one_of("eval.bn", ev.bn, ("running", "recalibrate"))
    require(isinstance(ev.linear, bool) or ev.linear in ("end", "points", "off"),
            f"eval.linear: end, points or off, got {ev.linear!r}")
    in_range("eval.linear_epochs", ev.linear_epochs, 1)
    in_range("eval.linear_lr", ev.linear_lr, 0, low_open=True)
    in_range("eval.linear_batch_size", ev.linear_batch_size, 1)
    in_range("eval.linear_weight_decay", ev.linear_weight_decay, 0)


def _scaling(config: RunConfig) -> None:
    in_range("scaling.num_workers", config.scaling.num_workers, 1)
    in_range("scaling.cpus_per_worker", config.scaling.cpus_per_worker, 0, low_open=True, none_ok=True)


def _dedup(config: RunConfig) -> None:
    dd = config.dedup
    in_range("dedup.every", dd.every, 0)
    in_range("dedup.threshold", dd.threshold, -1, 1)  # a cosine
    in_range("dedup.max_fraction", dd.max_fraction, 0, 1, high_open=True)


def _checkpoint(config: RunConfig) -> None:
    ck = config.checkpoint
    in_range("checkpoint.every", ck.every, 0)
    in_range("checkpoint.keep", ck.keep, 1)
    in_range("checkpoint.max_failures", ck.max_failures, -1)  # -1: Ray Train retries forever


def _tracking(config: RunConfig) -> None:
    tracking_settings(config).validate()


def dataset_key(name: str) -> str | None:
    """The pipeline key behind a name in a `prepare` error (`PATH`, `--classes`, `test_path`)."""
    if name in ("SOURCE", "source"):
        return "dataset.source"
    if name in ("PATH", "path"):
        return "dataset.path"
    if name == "DATASET_DIR":
        return "dataset.dir"
    option = name[2:].replace("-", "_") if name.startswith("--") else name
    return f"dataset.options.{option}" if option.isidentifier() else None


_STREAM_ARGS = ("kind", "samples_per_class", "blend_ratio", "class_order", "label_column",
                "classes_per_segment", "order_by", "seed")


def stream_key(name: str) -> str | None:
    """The pipeline key behind a name in a stream-building error (`blend_ratio`, `--order-by`)."""
    arg = name[2:].replace("-", "_") if name.startswith("--") else name
    if arg in _STREAM_ARGS:
        return f"stream.{arg}"
    return "dataset.dir" if name == "DATASET_DIR" else None


def check_before_work(config: RunConfig) -> None:
    """What only the machine running the pipeline can check, in seconds, before any prepare,
    stream or Ray start: data paths, the Ray address, GPUs.

    Not part of `validate`: `submit` checks a pipeline on a laptop whose paths and devices are
    not the cluster's.
    """
    from streamssl.export import resolve_backbone_file
    from streamssl.ray_setup import check_ray_address
    from streamssl.tracking import check_available

    _data_paths(config)
    check_ray_address()
    _gpus(config)
    if config.model.init_from is not None:
        resolve_backbone_file(config.model.init_from)  # names model.init_from
    check_available(tracking_settings(config))


def tracking_settings(config: RunConfig):
    """The `tracking.*` keys as streamssl.tracking's settings."""
    from streamssl.tracking import TrackingSettings

    return TrackingSettings(**dataclasses.asdict(config.tracking))


def _data_paths(config: RunConfig) -> None:
    from streamssl.ingest.options import check_source_input

    ds, order = config.dataset, config.stream.class_order
    if order not in ("natural", "random"):
        require(Path(order).is_file(), f"stream.class_order: {order!r} is not natural, random or an existing file")
    if ds.dir is not None:
        require(fsio.is_file(fsio.join(ds.dir, "dataset.json")),
                f"dataset.dir: {ds.dir} holds no dataset.json (not a prepared dataset: `streamssl prepare "
                f"SOURCE [PATH] --out {ds.dir}` makes one; without dataset.dir a run prepares into its cache)")
        check_dataset(config, ds.dir)
        return
    with renamed(dataset_key):
        check_source_input(ds.source, ds.path, ds.options.get("test_path"))


def _gpus(config: RunConfig) -> None:
    from streamssl.ray_setup import visible_gpus

    if not config.scaling.use_gpu:
        return
    workers, (have, seen_by) = config.scaling.num_workers, visible_gpus()
    if have is not None and have < workers:
        raise ConfigError(f"scaling.use_gpu: true needs {workers} GPU(s), one per worker, but {seen_by} sees "
                          f"{have} on this machine (set scaling.use_gpu=false, or run on a GPU machine)")


def check_dataset(config: RunConfig, dataset_dir: str) -> None:
    """Keys that depend on the prepared data, checked before Ray starts or a stream is built."""
    import pyarrow as pa

    manifest = fsio.join(dataset_dir, "manifest.parquet")
    require(fsio.is_file(manifest), f"dataset.dir: {dataset_dir} has no manifest.parquet (re-run `streamssl prepare`)")
    schema, column = fsio.parquet_file(manifest).schema_arrow, config.stream.label_column
    usable = [f.name for f in schema if pa.types.is_integer(f.type) and not f.name.endswith("_name")]
    labels = [name for name in usable if name == "label" or name.endswith("_label")]
    require(column in usable, f"stream.label_column: {column!r} is not an integer column of {dataset_dir} "
            f"(label columns: {', '.join(labels)})")
    _order_column(config, schema.names, dataset_dir)
    if config.model.read_size is None:
        for split in (dataset_dir, fsio.join(dataset_dir, "test")):
            if fsio.is_file(fsio.join(split, "manifest.parquet")):
                _same_image_sizes(split)


def _order_column(config: RunConfig, columns: list[str], dataset_dir: str) -> None:
    from streamssl.scoring import DEFAULT_COLUMNS
    from streamssl.streams.plan import parse_order_keys

    if config.stream.kind != "custom":
        return
    scores = [c for c in columns if c.startswith("difficulty")] or ["none yet"]
    for name, _ in parse_order_keys(config.stream.order_by):
        require(name in columns or name in DEFAULT_COLUMNS,  # a default score column is scored on first use
                f"stream.order_by: {dataset_dir} has no column {name!r} (score columns: {', '.join(scores)}; "
                f"`streamssl score` adds {' / '.join(DEFAULT_COLUMNS)}; `streamssl columns` joins others)")


def _same_image_sizes(split: str) -> None:
    sizes = fsio.read_table(fsio.join(split, "manifest.parquet"), columns=["width", "height"]).to_pandas()
    known = sizes[(sizes.width > 0) & (sizes.height > 0)].drop_duplicates()  # wds --no-verify: -1
    if len(known) > 1:
        a, b = known.iloc[0], known.iloc[1]
        raise ConfigError(f"model.read_size: {split} holds images of different sizes ({a.width}x{a.height}, "
                          f"{b.width}x{b.height}, ...); set model.read_size to resize them as they are read")
