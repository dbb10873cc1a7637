"""Ingest: image collections -> WebDataset shards + manifest + dataset.json, and reading them back.

Public API (docs/formats.md, "Prepared dataset"):
    prepare(source, path, out, *, shard_size=10_000, strict=False, verify=True, **source_options) -> dict
    load_dataset_info(dataset_dir) -> dict
    label_info(info, column="label") -> {num_classes, class_names, class_counts} | None
    read_manifest(dataset_dir) -> pandas.DataFrame
    read_samples(dataset_dir, rows) -> list[dict]
    load_images(dataset_dir, n, *, seed=0, size=None, label_column="label", skipped=None)
        -> (uint8 [n,H,W,3], int64 [n])
"""

from streamssl.ingest.build import SOURCES, prepare
from streamssl.ingest.reader import (
    decode_rgb,
    label_columns,
    label_info,
    load_dataset_info,
    load_images,
    read_manifest,
    read_samples,
)
from streamssl.ingest.writer import DEFAULT_SHARD_SIZE

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "SOURCES",
    "decode_rgb",
    "label_columns",
    "label_info",
    "load_dataset_info",
    "load_images",
    "prepare",
    "read_manifest",
    "read_samples",
]
