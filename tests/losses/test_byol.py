import pytest
import torch

from streamssl.losses import byol_loss


def naive_byol(p1, p2, t1, t2):
    """The paper's ||p/|p| - t/|t|||^2, summed over both view orders, averaged over the batch."""
    def term(p, t):
        return float(((p / p.norm() - t / t.norm()) ** 2).sum())
    b = p1.shape[0]
    return sum(term(p1[j], t2[j]) + term(p2[j], t1[j]) for j in range(b)) / b


def _views(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 6, generator=g, dtype=torch.float64) for _ in range(4)]


def test_equals_naive_normalized_mse():
    views = _views()
    loss = byol_loss(*views)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(naive_byol(*views), rel=1e-10)


def test_zero_when_predictions_match_targets_and_four_when_opposite():
    p1, p2, _, _ = _views()
    assert byol_loss(p1, p2, 2 * p2, 0.5 * p1).item() == pytest.approx(0.0, abs=1e-12)
    assert byol_loss(p1, p2, -p2, -p1).item() == pytest.approx(8.0, rel=1e-12)


def test_stop_gradient_on_targets():
    p1, p2, t1, t2 = (t.requires_grad_() for t in _views())
    byol_loss(p1, p2, t1, t2).backward()
    assert t1.grad is None and t2.grad is None and p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0


def test_decreases_under_gradient_descent(unit_crops, descend):
    t = unit_crops(2, 6, 8, dtype=torch.float32)  # fixed targets; the map learns to predict them
    first, last = descend(lambda p: byol_loss(p[0], p[1], t[0], t[1]), n_crops=2, b=6)
    assert last < first - 0.5


def test_rejects_mismatched_shapes():
    p1, p2, t1, t2 = _views()
    with pytest.raises(ValueError, match="byol_loss"):
        byol_loss(p1, p2, t1[:, :3], t2)
