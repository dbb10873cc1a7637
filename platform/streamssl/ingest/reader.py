"""Reading a prepared dataset back: dataset.json, the manifest, samples by offset, decoded images."""

from __future__ import annotations

import io
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from streamssl import fsio
from streamssl.errors import ConfigError, DataError
from streamssl.ingest.pixels import decode_failure, rgb_image

_FAST_TYPES = (b"0", b"\0")  # regular files, the only members our writer emits


def load_dataset_info(dataset_dir: str | Path) -> dict:
    """The dataset's `dataset.json` as a dict.

    Raises:
        ConfigError: the folder holds no prepared dataset.
    """
    path = fsio.join(dataset_dir, "dataset.json")
    if not fsio.is_file(path):
        raise ConfigError(
            f"{dataset_dir}: not a prepared dataset (no dataset.json); run `streamssl prepare` first"
        )
    return fsio.read_json(path)


def label_columns(info: dict) -> dict[str, dict]:
    """Every label column of a dataset.json -> its {num_classes, class_names, class_counts}.

    The one reader of label names and counts: datasets prepared before per-column summaries
    existed have only the top-level fields, which describe the `label` column.
    """
    columns = info.get("label_columns")
    if columns:
        return columns
    return {"label": {key: info[key] for key in ("num_classes", "class_names", "class_counts") if key in info}}


def label_info(info: dict, column: str = "label") -> dict | None:
    """One label column's {num_classes, class_names, class_counts} (None: no such column)."""
    return label_columns(info).get(column)


def read_manifest(dataset_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The manifest (one row per sample, in source order), optionally only some columns."""
    path = fsio.join(dataset_dir, "manifest.parquet")
    if not fsio.is_file(path):
        raise ConfigError(f"{dataset_dir}: no manifest.parquet; run `streamssl prepare` first")
    return fsio.read_dataframe(path, columns=columns)


def shard_root(dataset_dir: str | Path, info: dict | None = None) -> str:
    """The folder the manifest's `shard` paths are relative to ("." and ".." are relative to the
    dataset folder: a held-out test split reads the train split's shards)."""
    info = info or load_dataset_info(dataset_dir)
    root = str(info.get("shard_root", "."))
    if fsio.is_uri(root) or os.path.isabs(root):  # an absolute root replaces the folder
        return root
    return fsio.normpath(fsio.join(dataset_dir, root))


def split_fragment(fragment: bytes) -> list[tuple[str, bytes]]:
    """(member name, data) pairs of a tar fragment (a sample's headers and data, no EOF marker)."""
    out, pos = [], 0
    while pos + 512 <= len(fragment):
        header = fragment[pos : pos + 512]
        if not header.strip(b"\0"):
            break
        if header[156:157] not in _FAST_TYPES:  # pax/GNU long names in foreign shards
            return _split_with_tarfile(fragment)
        name = header[:100].split(b"\0", 1)[0].decode()
        prefix = header[345:500].split(b"\0", 1)[0].decode()
        size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        out.append((f"{prefix}/{name}" if prefix else name, fragment[pos + 512 : pos + 512 + size]))
        pos += 512 + size + (-size % 512)
    return out


def _split_with_tarfile(fragment: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(fragment), mode="r:") as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf if m.isfile()]


def split_name(name: str) -> tuple[str, str]:
    """WebDataset's (key, extension) of a member name: the key ends at the basename's first dot."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def _sample_dict(key: str, fragment: bytes, shard: str) -> dict:
    sample = {"__key__": key}
    for name, data in split_fragment(fragment):
        member_key, ext = split_name(name)
        if member_key != key:
            raise DataError(
                f"{shard}: member {name!r} where the manifest expects key {key!r} "
                "(manifest out of date? re-run `streamssl prepare`)"
            )
        sample[ext] = data
    return sample


def read_samples(dataset_dir: str | Path, rows: pd.DataFrame) -> list[dict]:
    """Raw member bytes of the given manifest rows, read by seeking (no scan, no decode).

    Args:
        dataset_dir: the prepared dataset folder.
        rows: manifest rows (needs `key`, `shard`, `offset`, `nbytes`), any order.

    Returns:
        One dict per row, in the rows' order, WebDataset style: `{"__key__": key, "png" or
        "jpg" or ...: bytes, "cls": bytes, "json": bytes}`.
    """
    return read_samples_at(shard_root(dataset_dir), rows)


def read_samples_at(root: Path, rows: pd.DataFrame) -> list[dict]:
    """`read_samples` with the shard root given (before dataset.json exists)."""
    out: list[dict | None] = [None] * len(rows)
    table = rows[["key", "shard", "offset", "nbytes"]].reset_index(drop=True)
    table["_row"] = np.arange(len(table))
    # Sorted by (shard, offset) so each shard is opened once and read front to back.
    for shard, group in table.sort_values(["shard", "offset"]).groupby("shard", sort=False):
        with fsio.open_input(fsio.join(root, shard)) as f:
            for key, offset, nbytes, row in zip(group.key, group.offset, group.nbytes, group._row):
                f.seek(int(offset))
                fragment = f.read(int(nbytes))
                if len(fragment) != nbytes:
                    raise DataError(f"{shard}: truncated at key {key!r} (expected {nbytes} bytes)")
                out[row] = _sample_dict(key, fragment, shard)
    return out


def decode_rgb(data: bytes, size: int | None = None) -> np.ndarray:
    """Decode one encoded image to uint8 (H, W, 3): gray replicated, alpha dropped, 16-bit scaled.

    Args:
        data: PNG/JPEG/WEBP bytes.
        size: if given, resize to (size, size) (bilinear, aspect not kept).
    """
    with Image.open(io.BytesIO(data)) as img:
        if size is not None:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced DCT scale, much faster
        img = rgb_image(img)
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img)


def _decode_or_reason(sample: dict, ext: str, size: int | None) -> np.ndarray | str:
    """The decoded image, or why it does not decode (a missing member included)."""
    if ext not in sample:
        return f"no {ext} member"
    try:
        return decode_rgb(sample[ext], size)
    except Exception as err:  # noqa: BLE001 (PIL raises many types; any of them is the sample's fault)
        return decode_failure(err)


def decode_rows(root: Path, rows: pd.DataFrame, size: int | None, skipped: list | None = None) -> list[np.ndarray]:
    """Read and decode the image of every row (uint8 (H, W, 3) each), in the rows' order.

    Args:
        root: the shard root of `rows`.
        rows: manifest rows (key, shard, offset, nbytes, ext).
        size: resize to (size, size); None keeps native sizes.
        skipped: None: an image that does not decode raises DataError naming its shard and key.
            A list: such images are left out and one {shard, key, reason} per image is appended.
    """
    return _keep_decoded(rows, decode_rows_marked(root, rows, size), skipped)[0]


def _keep_decoded(rows: pd.DataFrame, decoded: list, skipped: list | None) -> tuple[list, pd.DataFrame]:
    """The decoded images and their rows; the others raise (`skipped` None) or are recorded in it."""
    good = np.array([not isinstance(image, str) for image in decoded], dtype=bool)
    records = [
        {"shard": str(rows["shard"].iloc[i]), "key": str(rows["key"].iloc[i]), "reason": decoded[i]}
        for i in np.flatnonzero(~good)
    ]
    if records and skipped is None:
        raise DataError(f"{records[0]['shard']}, key {records[0]['key']}: {records[0]['reason']}")
    if skipped is not None:
        skipped += records
    return [image for image, ok in zip(decoded, good) if ok], rows[good]


def decode_rows_marked(root: Path, rows: pd.DataFrame, size: int | None) -> list[np.ndarray | str]:
    """Every row's decoded image, or the reason it does not decode, in the rows' order."""
    samples = read_samples_at(root, rows)
    exts = rows["ext"].tolist()

    def decode_chunk(start: int) -> list[np.ndarray | str]:
        part = zip(samples[start : start + 256], exts[start : start + 256])
        return [_decode_or_reason(sample, ext, size) for sample, ext in part]

    # PIL releases the GIL while decoding, so threads scale on large JPEGs; chunks keep the
    # per-task overhead negligible for 32x32 PNGs.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return [img for part in pool.map(decode_chunk, range(0, len(samples), 256)) for img in part]


def choose_rows(manifest: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None or n >= len(manifest):
        return manifest
    if n < 0:
        raise ConfigError(f"n: must be >= 0, got {n}")
    chosen = np.random.default_rng(seed).choice(len(manifest), size=n, replace=False)
    return manifest.iloc[np.sort(chosen)]


def load_images(
    dataset_dir: str | Path,
    n: int | None,
    *,
    seed: int = 0,
    size: int | None = None,
    label_column: str = "label",
    skipped: list | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random subset of a prepared dataset, decoded (the kNN memory / test sets).

    Args:
        dataset_dir: the prepared dataset folder (e.g. DIR or DIR/test).
        n: number of images (a uniform random subset, not stratified); None or >= size: all.
        seed: seed of the subset choice.
        size: resize every image to (size, size); None keeps the native size, which must then
            be the same for all chosen images.
        label_column: which manifest label column to return.
        skipped: None: an image that does not decode raises DataError naming its shard and key.
            A list: such images are left out of the result (so fewer than n come back) and one
            {shard, key, reason} per image is appended to it.

    Returns:
        images: uint8 (n, H, W, 3), in source order of the chosen samples.
        labels: int64 (n,).

    Raises:
        ConfigError: unknown label column, or mixed native sizes with size=None.
        DataError: an image that does not decode, when `skipped` is None.
    """
    return load_rows(dataset_dir, choose_rows(read_manifest(dataset_dir), n, seed), size=size,
                     label_column=label_column, skipped=skipped)


def load_rows(
    dataset_dir: str | Path, rows: pd.DataFrame, *, size: int | None = None, label_column: str = "label",
    skipped: list | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode the given manifest rows of a prepared dataset: `load_images` for a chosen subset."""
    if label_column not in rows.columns:
        raise ConfigError(f"label_column: {label_column!r} is not a manifest column of {dataset_dir}")
    if size is None and len(rows) and (rows.width.nunique() > 1 or rows.height.nunique() > 1):
        raise ConfigError(f"{dataset_dir}: images have different sizes; pass size= to resize them")
    decoded, rows = _keep_decoded(rows, decode_rows_marked(shard_root(dataset_dir), rows, size), skipped)
    if not decoded:
        side = size or 0
        return np.zeros((0, side, side, 3), np.uint8), np.zeros(0, np.int64)
    try:
        images = np.stack(decoded)
    except ValueError as err:  # headers without sizes (wds --no-verify) hid a mix of sizes
        raise ConfigError(f"{dataset_dir}: images have different sizes; pass size= to resize them") from err
    return images, rows[label_column].to_numpy(np.int64)
