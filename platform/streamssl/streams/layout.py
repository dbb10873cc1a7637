"""A stream folder's small files: stream.json and index.parquet columns (no Ray, no decoding)."""

from __future__ import annotations

import numpy as np

from streamssl import fsio
from streamssl.errors import ConfigError, DataError


def stream_info(stream_dir: str) -> dict:
    """The stream's `stream.json` (kind, seed, arguments, counts, plan hash, skipped).

    Raises:
        ConfigError: the folder holds no stream.
    """
    path = fsio.join(stream_dir, "stream.json")
    try:
        return fsio.read_json(path)
    except FileNotFoundError:
        raise ConfigError(f"STREAM_DIR: {stream_dir} has no stream.json (not a stream)") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable ({err})") from None


def index_column(stream_dir: str, column: str) -> np.ndarray:
    """(L,) one index.parquet column in stream order, e.g. `label`."""
    path = fsio.join(stream_dir, "index.parquet")
    if not fsio.is_file(path):
        raise ConfigError(f"STREAM_DIR: {stream_dir} has no index.parquet (not a stream)")
    return fsio.read_table(path, columns=[column])[column].to_numpy()
