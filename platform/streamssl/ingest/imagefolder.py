"""An image folder (`ROOT/CLASS/*.png|jpg`, ImageNet-100 style) to WebDataset shards.

Label ids follow sorted class-folder names; samples follow sorted paths. PNG, JPEG and WEBP
bytes are stored untouched with the extension of their real format (a `.png` that is really a
JPEG becomes `jpg`); other formats PIL can open are re-encoded as 8-bit PNG. Every image is
decoded in full once: one that does not decode is a skip record, never a crash here or in a run.
Every chunk of `shard_size` files (or ~500 MB) is one task writing one shard, on Ray Data when
there are 2+.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from streamssl import fsio
from streamssl.errors import ConfigError
from streamssl.ingest.dataset import TASK_COLUMNS, collect_rows, write_dataset
from streamssl.ingest.parallel import run_tasks, want_ray
from streamssl.ingest.pixels import eight_bit
from streamssl.ingest.prepare_options import PrepareOptions
from streamssl.ingest.stats import decoded_stats
from streamssl.ingest.writer import SHARD_PATTERN, ShardWriter, encode_meta

_KEEP = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}  # PIL format -> stored extension
_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")  # what PNG stores at 8 bits as is
_TASK_BYTES = 1 << 62  # a task writes exactly one shard; chunking already bounded its size


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def scan_folder(root: Path, arg: str = "PATH") -> tuple[list[str], list[tuple[str, int, int]]]:
    """Class names (sorted sub-folders) and (relative path, label, bytes) of every file, sorted.

    Raises:
        ConfigError: `root` is missing or holds no class folder with files (names `arg`).
    """
    if not root.is_dir():
        raise ConfigError(f"{arg}: {root} is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = []
    for label, name in enumerate(classes):
        paths = sorted(p for p in (root / name).rglob("*") if p.is_file() and _visible(p, root))
        files += [(p.relative_to(root).as_posix(), label, p.stat().st_size) for p in paths]
    if not files:
        raise ConfigError(f"{arg}: {root} holds no class sub-folders with image files")
    return classes, files


def plan_chunks(sizes: np.ndarray, max_count: int, max_bytes: int) -> list[tuple[int, int]]:
    """[start, end) file ranges: at most `max_count` files each, closed once past `max_bytes`."""
    chunks, start, total = [], 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= max_count or total >= max_bytes):
            chunks.append((start, i))
            start, total = i, 0
        total += int(size)
    return chunks + [(start, len(sizes))]


def read_image_file(path: Path) -> tuple[str, bytes, int, int]:
    """(extension, bytes to store, width, height) of one image file; raises if it does not decode.

    The whole image is decoded, so a truncated body (an intact header) fails here, at prepare,
    rather than in a run. Formats not kept as they are become 8-bit PNG (high depth scaled).
    """
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        img.load()  # the full decode: PIL reads only the header until pixels are needed
        if img.format in _KEEP:
            return _KEEP[img.format], data, width, height
        img = eight_bit(img)
        if img.mode not in _PNG_MODES:  # e.g. CMYK or YCbCr TIFF
            img = img.convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format="PNG")  # e.g. BMP/GIF/TIFF: decoded once, stored losslessly
        return "png", buf.getvalue(), width, height


def write_chunk(spec: dict) -> dict[str, list]:
    """Task: write the chunk's files as shard `spec['shard']`; returns TASK_COLUMNS lists."""
    cols: dict[str, list] = {name: [] for name in TASK_COLUMNS}
    root, names = Path(spec["root"]), spec["class_names"]
    with ShardWriter(spec["out"], len(spec["files"]), _TASK_BYTES, start=spec["shard"]) as writer:
        for rel, label, key in zip(spec["files"], spec["labels"], spec["keys"]):
            try:
                ext, data, width, height = read_image_file(root / rel)
            except Exception as err:  # unreadable or not an image: a skip record, never a crash
                row = dict(shard=rel, key=key, reason=f"not an image: {type(err).__name__}: {err}")
            else:
                members = {
                    ext: data,
                    "cls": str(label).encode(),
                    "json": encode_meta({"id": rel, "label_name": names[label]}),
                }
                shard, offset, nbytes = writer.write(key, members)
                row = dict(
                    key=key,
                    shard=shard,
                    offset=offset,
                    nbytes=nbytes,
                    size=len(data),
                    ext=ext,
                    width=width,
                    height=height,
                    label=label,
                    reason="",
                )
            for name in TASK_COLUMNS:
                cols[name].append(row.get(name))
    return cols


def _relabel(files: list, own_classes: list[str], labels_of: dict[str, int], arg: str) -> list:
    """Map a test folder's labels onto the training classes, by folder name."""
    unknown = sorted(set(own_classes) - set(labels_of))
    if unknown:
        raise ConfigError(f"{arg}: class folder {unknown[0]!r} is not among the training classes")
    return [(rel, labels_of[own_classes[label]], size) for rel, label, size in files]


def ingest_files(
    root: Path,
    files: list[tuple[str, int, int]],
    out: Path,
    class_names: list[str],
    opts: PrepareOptions,
    key_prefix: str,
    extra: dict,
) -> dict:
    """Write one split (train or test) of an image folder and its manifest + dataset.json."""
    fsio.makedirs(out)
    chunks = plan_chunks(np.array([size for _, _, size in files]), opts.shard_size, opts.shard_bytes)
    specs = [
        {
            "name": SHARD_PATTERN.format(i),
            "root": str(root),
            "out": str(out),
            "shard": i,
            "class_names": class_names,
            "files": [f[0] for f in files[a:b]],
            "labels": [f[1] for f in files[a:b]],
            "keys": [f"{key_prefix}_{j:08d}" for j in range(a, b)],
        }
        for i, (a, b) in enumerate(chunks)
    ]
    parallel = want_ray(opts.parallel, len(specs), sum(size for _, _, size in files))
    frames = run_tasks(
        write_chunk,
        specs,
        TASK_COLUMNS,
        parallel=parallel,
        weights=[b - a for a, b in chunks],
        desc=f"{key_prefix} files",
        unit="img",
        bar_disable=opts.bar_disable,
    )
    rows, skipped = collect_rows(frames, opts.strict)
    mean, std = decoded_stats(out, rows)
    return write_dataset(
        out,
        rows,
        label_names={"label": class_names},
        source=opts.source,
        skipped=skipped,
        mean=mean,
        std=std,
        extra=extra,
    )


def prepare_source(path: Path | None, out: Path, opts: PrepareOptions) -> dict:
    """Train split from PATH into `out`; with `test_path`, the test split into `out/test`."""
    if path is None:
        raise ConfigError("PATH: imagefolder needs a folder with one sub-folder per class")
    class_names, files = scan_folder(path)
    if opts.test_path is not None:
        test_classes, test_files = scan_folder(opts.test_path, "--test-path")
        test_files = _relabel(
            test_files, test_classes, {n: i for i, n in enumerate(class_names)}, "--test-path"
        )
        ingest_files(
            opts.test_path,
            test_files,
            out / "test",
            class_names,
            opts,
            "imagefolder_test",
            extra={"split": "test"},
        )
    return ingest_files(
        path,
        files,
        out,
        class_names,
        opts,
        "imagefolder",
        extra={"split": "train", "test": "test" if opts.test_path else None},
    )
