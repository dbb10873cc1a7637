import math

import pytest
import torch
import torch.nn.functional as F

from streamssl.losses import ird_loss


def naive_ird(z, z_past, t_cur, t_past):
    """Co2L's IRD one row at a time: -sum_j p_ij log q_ij over j != i, averaged over rows."""
    cur, past = F.normalize(z, dim=1), F.normalize(z_past, dim=1)
    b, total = z.shape[0], 0.0
    for i in range(b):
        others = [j for j in range(b) if j != i]
        q_den = sum(math.exp(float(cur[i] @ cur[j]) / t_cur) for j in others)
        p_den = sum(math.exp(float(past[i] @ past[j]) / t_past) for j in others)
        for j in others:
            p = math.exp(float(past[i] @ past[j]) / t_past) / p_den
            total -= p * math.log(math.exp(float(cur[i] @ cur[j]) / t_cur) / q_den)
    return total / b


def _pair(b=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("t_cur, t_past", [(0.1, 0.01), (0.2, 0.5)])
def test_equals_naive_loop(t_cur, t_past):
    z, z_past = _pair()
    loss = ird_loss(z, z_past, t_cur, t_past)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(naive_ird(z, z_past, t_cur, t_past), rel=1e-9)


def test_past_side_gets_no_gradient():
    z, z_past = (t.requires_grad_() for t in _pair())
    ird_loss(z, z_past).backward()
    assert z.grad.abs().sum() > 0 and z_past.grad is None


def test_single_sample_has_nothing_to_distill():
    z, z_past = (t[:1].requires_grad_() for t in _pair())
    loss = ird_loss(z, z_past)
    assert loss.item() == 0.0 and loss.requires_grad


def test_decreases_towards_the_past_relations(descend):
    _, z_past = _pair(b=8, d=8, seed=3)
    first, last = descend(lambda z: ird_loss(z[0], z_past, 0.1, 0.1), n_crops=1, b=8)
    assert last < first - 0.1


def test_minimum_at_matching_relations_equals_the_entropy():
    z, _ = _pair(seed=4)
    loss = ird_loss(z, z, 0.3, 0.3).item()
    cur = F.normalize(z, dim=1)
    sims = cur @ cur.T / 0.3
    p = torch.softmax(sims.masked_fill(torch.eye(6, dtype=torch.bool), float("-inf")), dim=1)
    entropy = -(p * p.clamp_min(1e-300).log()).sum(1).mean().item()
    assert loss == pytest.approx(entropy, rel=1e-9)


@pytest.mark.parametrize("args, match", [
    ((torch.zeros(4, 3), torch.zeros(4, 2)), r"\(b, d\)"),
    ((torch.zeros(4, 3), torch.zeros(4, 3), 0.0), "temperatures"),
])
def test_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        ird_loss(*args)
