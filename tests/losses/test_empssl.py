import pytest
import torch
import torch.nn.functional as F

from streamssl.losses import cosine_to_mean_loss, empssl_loss, tcr_loss


def naive_cosine_to_mean(z):
    n_crops, b, _ = z.shape
    total = 0.0
    for i in range(n_crops):
        for j in range(b):
            mean = sum(z[k, j] for k in range(n_crops)) / n_crops
            total += float(z[i, j] @ mean / (z[i, j].norm() * mean.norm()))
    return -total / (n_crops * b)


def test_cosine_to_mean_equals_naive_loop(unit_crops):
    z = unit_crops(4, 5, 6)
    assert cosine_to_mean_loss(z).item() == pytest.approx(naive_cosine_to_mean(z), rel=1e-10)


def test_empssl_is_the_weighted_sum_and_reports_terms(unit_crops):
    z = unit_crops(3, 4, 8)
    loss, parts = empssl_loss(z, lambda_sim=200.0, lambda_tcr=0.5, eps=0.2)
    assert loss.item() == pytest.approx(200 * naive_cosine_to_mean(z) + 0.5 * tcr_loss(z).item())
    assert set(parts) == {"sim", "tcr"} and not parts["sim"].requires_grad


def test_identical_crops_reach_the_minimum_of_the_cosine_term(unit_crops):
    z = unit_crops(1, 4, 8).expand(3, 4, 8)
    assert cosine_to_mean_loss(z).item() == pytest.approx(-1.0)


def test_invariant_to_permuting_images_and_crops(unit_crops):
    z = unit_crops(3, 5, 7)
    shuffled = z[[2, 0, 1]][:, [4, 1, 3, 0, 2]]
    assert empssl_loss(shuffled)[0].item() == pytest.approx(empssl_loss(z)[0].item())


def test_gradient_flows_through_the_mean(unit_crops):
    # with unit-norm crops the gradient through the mean is exactly zero, so use raw vectors
    scale = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(3, 1, 1)
    z = (unit_crops(3, 2, 4) * scale).requires_grad_()
    cosine_to_mean_loss(z).backward()
    z2 = z.detach().clone().requires_grad_()
    (-F.cosine_similarity(z2, z2.mean(0, keepdim=True).detach(), dim=-1).mean()).backward()
    assert not torch.allclose(z.grad, z2.grad)


def test_decreases_under_gradient_descent(descend):
    first, last = descend(lambda z: empssl_loss(z, lambda_sim=1.0, lambda_tcr=0.05)[0], lr=0.5)
    assert last < first - 0.05
