"""CIFAR-10 / CIFAR-100 from the standard python-pickle folders (Krizhevsky 2009).

`cifar-10-batches-py/`: data_batch_1..5, test_batch, batches.meta.
`cifar-100-python/`: train, test, meta; the fine label is `label` and the 20 superclasses are
`coarse_label` (the stream protocol segments CIFAR-100 by them).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from streamssl.errors import ConfigError, DataError
from streamssl.ingest.arrays import ArraySplit, prepare_array_split
from streamssl.ingest.options import PrepareOptions

_LAYOUT = {  # source -> (folder name, train files, test files, meta file)
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta"),
}
_LABEL_KEYS = {
    "cifar10": {"label": (b"labels", b"label_names")},
    "cifar100": {
        "label": (b"fine_labels", b"fine_label_names"),
        "coarse_label": (b"coarse_labels", b"coarse_label_names"),
    },
}


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"PATH: {path} is missing (expected the CIFAR python-pickle layout)")
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except Exception as err:  # any unpickling failure means a damaged or foreign file
        raise DataError(f"{path}: not a CIFAR pickle ({type(err).__name__}: {err})") from None


def _folder(path: Path, source: str) -> Path:
    """Accept the batches folder itself or its parent (where the tarball was unpacked)."""
    nested = path / _LAYOUT[source][0]
    return nested if nested.is_dir() else path


def _load(folder: Path, source: str, files: list[str], names: dict[str, list[str]]) -> ArraySplit:
    batches = [_unpickle(folder / f) for f in files]
    try:
        images = np.concatenate([np.asarray(b[b"data"], np.uint8) for b in batches])
        labels = {
            col: np.concatenate([np.asarray(b[key], np.int64) for b in batches])
            for col, (key, _) in _LABEL_KEYS[source].items()
        }
        ids = [f.decode() for b in batches for f in b[b"filenames"]]
    except (KeyError, ValueError) as err:
        raise DataError(f"{folder / files[0]}: unexpected CIFAR batch content ({err!r})") from None
    if images.shape[1:] != (3072,) or any(len(v) != len(images) for v in labels.values()):
        raise DataError(f"{folder / files[0]}: expected (N, 3072) images with N labels, got {images.shape}")
    # Rows are stored channel-planar (3, 32, 32); shards hold HWC images.
    return ArraySplit(images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels, names, ids)


def _class_names(folder: Path, source: str) -> dict[str, list[str]]:
    meta = _unpickle(folder / _LAYOUT[source][3])
    try:
        return {col: [n.decode() for n in meta[key]] for col, (_, key) in _LABEL_KEYS[source].items()}
    except KeyError as err:
        raise DataError(f"{folder / _LAYOUT[source][3]}: no {err} entry") from None


def _prepare(path: Path | None, out: Path, opts: PrepareOptions) -> dict:
    if path is None:
        raise ConfigError(f"PATH: {opts.source} needs the folder of its python-pickle batches")
    if not path.is_dir():
        raise ConfigError(f"PATH: {path} is not a folder")
    folder = _folder(path, opts.source)
    _, train_files, test_files, _ = _LAYOUT[opts.source]
    names = _class_names(folder, opts.source)
    train, test = (
        _load(folder, opts.source, train_files, names),
        _load(folder, opts.source, test_files, names),
    )
    prepare_array_split(test, out / "test", opts, f"{opts.source}_test", extra={"split": "test"})
    return prepare_array_split(train, out, opts, opts.source, extra={"split": "train", "test": "test"})


def prepare_cifar10(path: Path | None, out: Path, opts: PrepareOptions) -> dict:
    """CIFAR-10: train (50k) to `out`, test (10k) to `out/test`; returns train's info."""
    return _prepare(path, out, opts)


def prepare_cifar100(path: Path | None, out: Path, opts: PrepareOptions) -> dict:
    """CIFAR-100 with `label` (100 fine) and `coarse_label` (20 superclasses) columns."""
    return _prepare(path, out, opts)
