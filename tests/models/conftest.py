"""Model tests run on tiny inputs; pin them to one intra-op thread."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
