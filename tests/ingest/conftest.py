"""Tiny inputs for every ingest source, written into tmp dirs in their real on-disk layouts."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def encode(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path) -> Path:
    """Fashion-MNIST idx .gz files: 12 train and 5 test images, 28x28, labels i % 10."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fmnist"
    folder.mkdir()
    for prefix, n in (("train", 12), ("t10k", 5)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


@pytest.fixture
def cifar10_dir(tmp_path) -> Path:
    """`cifar-10-batches-py` with 5 train batches of 2 images and a test batch of 3."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    _pickle(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    for name, n, first in [(f"data_batch_{b}", 2, 2 * (b - 1)) for b in range(1, 6)] + [("test_batch", 3, 0)]:
        labels = [(first + i) % 10 for i in range(n)]
        _pickle(
            folder / name,
            {
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"labels": labels,
                b"filenames": [f"{name}_{i}.png".encode() for i in range(n)],
            },
        )
    return folder


@pytest.fixture
def cifar100_dir(tmp_path) -> Path:
    """`cifar-100-python` with 6 train and 2 test images; coarse label = fine // 5."""
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _pickle(
        folder / "meta",
        {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        },
    )
    for name, fine in (("train", [0, 99, 5, 42, 7, 64]), ("test", [3, 98])):
        _pickle(
            folder / name,
            {
                b"data": rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8),
                b"fine_labels": fine,
                b"coarse_labels": [f // 5 for f in fine],
                b"filenames": [f"{name}_{i}.png".encode() for i in range(len(fine))],
            },
        )
    return folder


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """3 classes; gray PNG, RGB JPEG, RGBA PNG, a JPEG named .png, a BMP; sizes 8x6 and 10x10."""
    rng = np.random.default_rng(3)
    root = tmp_path / "folder"
    files = {
        "cat/a_gray.png": encode(rng.integers(0, 256, (6, 8), dtype=np.uint8), "PNG"),
        "cat/b_rgb.jpg": encode(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "JPEG"),
        "dog/c_rgba.png": encode(rng.integers(0, 256, (6, 8, 4), dtype=np.uint8), "PNG"),
        "dog/d_really_jpeg.png": encode(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8), "JPEG"),
        "emu/e.bmp": encode(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "BMP"),
        "emu/f.png": encode(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "PNG"),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "README.txt").write_text("top-level files are not classes")
    (root / "cat" / ".DS_Store").write_bytes(b"hidden files are ignored")
    return root


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    """A tar as webdataset/timm write it (GNU format, arbitrary mtime)."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tf.addfile(info, io.BytesIO(data))


def wds_sample(key: str, label: int | None, image: bytes | None, ext: str = "jpg") -> list[tuple[str, bytes]]:
    members = [(f"{key}.{ext}", image)] if image is not None else []
    if label is not None:
        members.append((f"{key}.cls", str(label).encode()))
    return members + [(f"{key}.json", json.dumps({"filename": key}).encode())]


@pytest.fixture
def jpeg_bytes() -> bytes:
    return encode(np.random.default_rng(4).integers(0, 256, (12, 16, 3), dtype=np.uint8), "JPEG")


@pytest.fixture
def wds_dir(tmp_path, jpeg_bytes) -> Path:
    """timm's ImageNet-22k layout: 2 shards of 3 samples (labels 0..5) plus `_info.json`."""
    folder = tmp_path / "in22k"
    folder.mkdir()
    for s in range(2):
        members = [m for i in range(3) for m in wds_sample(f"n0000{s}_{i}", 3 * s + i, jpeg_bytes)]
        write_tar(folder / f"imagenet22k-train-{s:04d}.tar", members)
    (folder / "_info.json").write_text(json.dumps({"name": "imagenet22k", "splits": {}}))
    return folder


@pytest.fixture
def make_sample():
    """wds_sample(key, label, image, ext="jpg"): one sample's members (no image/cls when None)."""
    return wds_sample


@pytest.fixture
def make_shards():
    """make_shards(folder, members_0, members_1, ...): timm-named shards of the given members."""

    def make(folder: Path, *shards: list) -> Path:
        folder.mkdir()
        for i, members in enumerate(shards):
            write_tar(folder / f"imagenet22k-train-{i:04d}.tar", members)
        return folder

    return make
