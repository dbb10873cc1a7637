"""Tune tests share one data root: the smoke dataset and stream are prepared once per module."""

import pytest


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("data")
    mp = pytest.MonkeyPatch()
    mp.setenv("STREAMSSL_DATA", str(root))
    yield root
    mp.undo()

