"""Helpers for the loss tests: random unit-norm crops and a fixed-batch descent check."""

import pytest
import torch
import torch.nn.functional as F


def _unit_crops(n_crops, b, d, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n_crops, b, d, generator=g, dtype=dtype), dim=-1)


def _descend(loss_fn, n_crops=4, b=6, d=8, steps=50, lr=0.5):
    """Optimize a linear map of fixed random inputs by plain SGD; returns (first, last) loss."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n_crops, b, 16, generator=g)
    w = torch.nn.Parameter(torch.randn(16, d, generator=g) / 4)
    opt = torch.optim.SGD([w], lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn(F.normalize(x @ w, dim=-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


@pytest.fixture
def unit_crops():
    """unit_crops(N, b, d, seed=0, dtype=float64) -> (N, b, d) random unit vectors."""
    return _unit_crops


@pytest.fixture
def descend():
    """descend(loss_fn, ...) -> (first, last) loss of 50 SGD steps on a linear map of fixed inputs."""
    return _descend


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
