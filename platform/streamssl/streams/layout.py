"""A stream folder's small files: stream.json and index.parquet columns (no Ray, no decoding)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq

from streamssl.errors import ConfigError, DataError


def stream_info(stream_dir: str) -> dict:
    """The stream's `stream.json` (kind, seed, arguments, counts, plan hash, skipped).

    Raises:
        ConfigError: the folder holds no stream.
    """
    path = os.path.join(stream_dir, "stream.json")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"STREAM_DIR: {stream_dir} has no stream.json (not a stream)") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable ({err})") from None


def index_column(stream_dir: str, column: str) -> np.ndarray:
    """(L,) one index.parquet column in stream order, e.g. `label`."""
    path = os.path.join(stream_dir, "index.parquet")
    if not os.path.isfile(path):
        raise ConfigError(f"STREAM_DIR: {stream_dir} has no index.parquet (not a stream)")
    return pq.read_table(path, columns=[column])[column].to_numpy()
