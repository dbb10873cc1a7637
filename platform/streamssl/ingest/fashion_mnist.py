"""Fashion-MNIST from its idx files (Xiao et al. 2017, https://arxiv.org/abs/1708.07747).

Parsed directly with numpy: Debian's `dataset-fashion-mnist` recompressed the .gz files, so
torchvision's checksum fails and it would try to download.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from streamssl.errors import ConfigError, DataError
from streamssl.ingest.arrays import ArraySplit, prepare_array_split
from streamssl.ingest.prepare_options import PrepareOptions

DEFAULT_PATH = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (optionally gzipped) as a uint8 array of its declared shape.

    Raises:
        DataError: not a uint8 idx file, or its size disagrees with its header.
    """
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        try:
            raw = f.read()
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: cannot read ({err})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path}: not a uint8 idx file")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} but holds {data.size} bytes")
    return data.reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise ConfigError(f"PATH: {folder} has no {stem}[.gz] (expected Fashion-MNIST idx files)")


def load_split(folder: Path, split: str) -> ArraySplit:
    """The train or test split: images uint8 (N, 28, 28), labels int64 (N,)."""
    images_file, labels_file = (_find(folder, stem) for stem in _FILES[split])
    images, labels = read_idx(images_file), read_idx(labels_file).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{images_file}: {images.shape} images do not match {labels.shape} labels")
    return ArraySplit(
        images, {"label": labels}, {"label": CLASS_NAMES}, [f"{split}/{i}" for i in range(len(labels))]
    )


def prepare_source(path: Path | None, out: Path, opts: PrepareOptions) -> dict:
    """Write the train split to `out` and the t10k split to `out/test`; returns train's info."""
    folder = path or DEFAULT_PATH
    if not folder.is_dir():
        hint = " (install Debian's dataset-fashion-mnist, or pass PATH)" if path is None else ""
        raise ConfigError(f"PATH: {folder} is not a folder{hint}")
    train, test = load_split(folder, "train"), load_split(folder, "test")
    prepare_array_split(test, out / "test", opts, "fashion-mnist_test", extra={"split": "test"})
    return prepare_array_split(train, out, opts, "fashion-mnist", extra={"split": "train", "test": "test"})
