"""Fixtures for the stream tests."""

from pathlib import Path

import numpy as np
import pytest
from streamdata import write_prepared


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """4 classes x 6 samples, interleaved, 8x8 RGB PNG in 3 shards."""
    return write_prepared(tmp_path / "data", np.tile(np.arange(4), 6))
