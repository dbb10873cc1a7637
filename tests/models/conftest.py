"""Model tests run on tiny inputs; pin them to one intra-op thread."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny inputs gain nothing from intra-op threads, which stall on a loaded shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
