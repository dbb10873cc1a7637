import pytest
import torch

from streamssl.losses import simsiam_loss


def naive_simsiam(p1, p2, z1, z2):
    def cos(a, b):
        return float(a @ b / (a.norm() * b.norm()))
    b = p1.shape[0]
    return -0.5 * sum(cos(p1[j], z2[j]) + cos(p2[j], z1[j]) for j in range(b)) / b


def _views(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 6, generator=g, dtype=torch.float64) for _ in range(4)]


def test_equals_naive_loop():
    p1, p2, z1, z2 = _views()
    loss = simsiam_loss(p1, p2, z1, z2)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(naive_simsiam(p1, p2, z1, z2), rel=1e-10)


def test_stop_gradient_on_targets():
    p1, p2, z1, z2 = (t.requires_grad_() for t in _views())
    simsiam_loss(p1, p2, z1, z2).backward()
    assert z1.grad is None and z2.grad is None and p1.grad.abs().sum() > 0


def test_invariant_to_permuting_the_batch():
    views = _views()
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert simsiam_loss(*(v[perm] for v in views)).item() == pytest.approx(simsiam_loss(*views).item())


def test_decreases_under_gradient_descent(unit_crops, descend):
    z = unit_crops(2, 6, 8, dtype=torch.float32)  # fixed targets; the map learns to predict them
    first, last = descend(lambda p: simsiam_loss(p[0], p[1], z[0], z[1]), n_crops=2, b=6)
    assert last < first - 0.1


def test_rejects_mismatched_shapes():
    p1, p2, z1, z2 = _views()
    with pytest.raises(ValueError, match="simsiam_loss"):
        simsiam_loss(p1, p2[:3], z1, z2)
