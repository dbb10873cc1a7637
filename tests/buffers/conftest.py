"""Buffer tests use tiny tensors: one intra-op thread avoids OpenMP contention on shared cores."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
