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
from streamssl.ingest.prepare_options import PrepareOptions

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


# Everything a CIFAR batch (a dict of lists, bytes and one uint8 array) can need; pickle's other
# callables (os.system, builtins.eval, ...) would let a data file run code.
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),  # arrays, as the CIFAR files store them
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # arrays at pickle protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds dicts, lists, bytes, strings, numbers and numpy arrays, nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}, which a CIFAR batch never holds")


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"PATH: {path} is missing (expected the CIFAR python-pickle layout)")
    try:
        with open(path, "rb") as f:
            return _BatchUnpickler(f, encoding="bytes").load()
    except Exception as err:  # any unpickling failure means a damaged, foreign or hostile file
        detail = " ".join(str(err).split())
        raise DataError(f"{path}: not a CIFAR pickle ({type(err).__name__}: {detail})") from None


def check_layout(path: Path, source: str) -> None:
    """ConfigError naming PATH unless it (or its CIFAR sub-folder) holds every batch file."""
    folder = _folder(path, source)
    _, train, test, meta = _LAYOUT[source]
    for name in [meta, *train, *test]:
        if not (folder / name).is_file():
            raise ConfigError(f"PATH: {folder / name} is missing (expected the CIFAR python-pickle layout)")


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
