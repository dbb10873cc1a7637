import math

import pytest
import torch

from streamssl.optim import LARS, learning_rate


def test_lars_scales_weights_and_skips_1d_params():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8, 4))
    b = torch.nn.Parameter(torch.randn(8))
    opt = LARS([w, b], lr=0.1, momentum=0.0, weight_decay=1e-4, eta=0.005)
    w.grad, b.grad = torch.randn(8, 4), torch.randn(8)
    w0, b0, gw, gb = w.detach().clone(), b.detach().clone(), w.grad.clone(), b.grad.clone()
    opt.step()
    g = gw + 1e-4 * w0
    ratio = min(0.005 * w0.norm() / (gw.norm() + 1e-4 * w0.norm() + 1e-8) / 0.1, 1.0)
    assert torch.allclose(w, w0 - 0.1 * ratio * g, atol=1e-6)
    assert torch.allclose(b, b0 - 0.1 * gb, atol=1e-6)  # no LARS, no weight decay


def test_cosine_schedule_endpoints():
    assert learning_rate(0.1, "constant", 50, 100) == 0.1
    assert learning_rate(0.1, "cosine", 0, 100) == 0.1
    assert math.isclose(learning_rate(0.1, "cosine", 50, 100), 0.05)
    assert learning_rate(0.1, "cosine", 100, 100) == 0.0


def test_warmup_rises_linearly_then_the_schedule_runs_over_the_remaining_updates():
    lrs = [learning_rate(0.4, "cosine", u, 104, warmup=4) for u in range(105)]
    assert lrs[:4] == [0.1, 0.2, 0.30000000000000004, 0.4]
    assert lrs[4] == 0.4  # the cosine starts where the warmup ends
    assert math.isclose(lrs[54], 0.2) and lrs[104] == 0.0
    assert [learning_rate(0.4, "constant", u, 10, warmup=2) for u in range(4)] == [0.2, 0.4, 0.4, 0.4]


def test_lr_scaling_with_the_global_batch():
    from streamssl.optim import scaled_lr

    assert scaled_lr(0.1, "none", 1024, 256) == 0.1
    assert math.isclose(scaled_lr(0.1, "linear", 1024, 256), 0.4)
    assert math.isclose(scaled_lr(0.1, "sqrt", 1024, 256), 0.2)
    assert math.isclose(scaled_lr(0.1, "linear", 128, 256), 0.05)
    with pytest.raises(ValueError, match="lr_scaling"):
        scaled_lr(0.1, "cubic", 1024, 256)
