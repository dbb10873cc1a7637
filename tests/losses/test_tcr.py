import pytest
import torch

from streamssl.errors import ConfigError
from streamssl.losses import tcr_loss


def naive_tcr(z, eps):
    n_crops, b, d = z.shape
    total = 0.0
    for i in range(n_crops):
        mat = torch.eye(d, dtype=z.dtype) + d / (b * eps) * z[i].T @ z[i]  # the d x d form
        total += 0.5 * torch.logdet(mat).item()
    return -total / n_crops


@pytest.mark.parametrize("b,d", [(4, 9), (9, 4), (6, 6)])  # Sylvester form, d x d form, equal
def test_equals_naive_d_by_d_form(b, d, unit_crops):
    z = unit_crops(3, b, d)
    loss = tcr_loss(z, eps=0.2)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(naive_tcr(z, 0.2), rel=1e-10)


def test_invariant_to_permuting_images_and_crops(unit_crops):
    z = unit_crops(3, 5, 7)
    g = torch.Generator().manual_seed(0)
    shuffled = z[torch.randperm(3, generator=g)][:, torch.randperm(5, generator=g)]
    assert tcr_loss(shuffled).item() == pytest.approx(tcr_loss(z).item())


def test_float32_matches_float64_at_paper_scale(unit_crops):
    z = unit_crops(2, 64, 256)
    assert tcr_loss(z.float()).item() == pytest.approx(tcr_loss(z).item(), rel=1e-5)


def test_decreases_under_gradient_descent(descend):
    first, last = descend(lambda z: tcr_loss(z), lr=0.2)
    assert last < first - 0.1


def test_collapsed_features_have_the_lowest_rate(unit_crops):
    spread = unit_crops(1, 8, 8)
    collapsed = spread[:, :1].expand(1, 8, 8)
    assert tcr_loss(collapsed) > tcr_loss(spread)


def test_rejects_bad_eps_and_shape(unit_crops):
    with pytest.raises(ConfigError, match="eps"):
        tcr_loss(unit_crops(1, 2, 3), eps=0)
    with pytest.raises(ValueError, match="shape"):
        tcr_loss(torch.zeros(2, 3))
