import math

import pytest
import torch
import torch.nn.functional as F

from streamssl.errors import ConfigError
from streamssl.losses import mcc_loss


def _means(z):
    n_crops, b, _ = z.shape
    return [F.normalize(sum(z[i, j] for i in range(n_crops)) / n_crops, dim=0) for j in range(b)]


def naive_crop_anchor(z, tau):
    n_crops, b, _ = z.shape
    means = _means(z)
    total = 0.0
    for i in range(n_crops):
        for j in range(b):
            denom = sum(math.exp(float(z[i, j] @ means[k]) / tau) for k in range(b))
            total += -math.log(math.exp(float(z[i, j] @ means[j]) / tau) / denom)
    return total / (n_crops * b)


def naive_mean_anchor(z, tau):
    n_crops, b, _ = z.shape
    means = _means(z)
    total = 0.0
    for j in range(b):
        denom = sum(math.exp(float(means[j] @ z[c, k]) / tau) for c in range(n_crops) for k in range(b))
        for i in range(n_crops):
            total += -math.log(math.exp(float(means[j] @ z[i, j]) / tau) / denom)
    return total / (n_crops * b)


VARIANTS = [("crop_anchor", naive_crop_anchor), ("mean_anchor", naive_mean_anchor)]


@pytest.mark.parametrize("variant,naive", VARIANTS)
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_equals_naive_loop(variant, naive, tau, unit_crops):
    z = unit_crops(3, 5, 7)
    loss = mcc_loss(z, tau=tau, variant=variant)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(naive(z, tau), rel=1e-9)


def test_variants_differ(unit_crops):
    z = unit_crops(3, 5, 7)
    assert abs(mcc_loss(z, variant="crop_anchor") - mcc_loss(z, variant="mean_anchor")) > 1e-3


@pytest.mark.parametrize("variant", ["crop_anchor", "mean_anchor"])
def test_invariant_to_permuting_images_and_crops(variant, unit_crops):
    z = unit_crops(4, 6, 8)
    g = torch.Generator().manual_seed(3)
    shuffled = z[torch.randperm(4, generator=g)][:, torch.randperm(6, generator=g)]
    assert mcc_loss(shuffled, variant=variant).item() == pytest.approx(mcc_loss(z, variant=variant).item())


@pytest.mark.parametrize("variant", ["crop_anchor", "mean_anchor"])
def test_gathered_negatives_with_offset_equal_the_full_batch(variant, unit_crops):
    z = unit_crops(3, 8, 5)
    means_all = F.normalize(z.mean(0), dim=-1)
    part = [mcc_loss(z[:, s:s + 4], variant=variant, means_all=means_all, crops_all=z, offset=s)
            for s in (0, 4)]
    assert ((part[0] + part[1]) / 2).item() == pytest.approx(mcc_loss(z, variant=variant).item())


def test_gradient_flows_through_the_means(unit_crops):
    z = unit_crops(2, 3, 4).requires_grad_()
    mcc_loss(z).backward()
    z1 = unit_crops(2, 3, 4).requires_grad_()  # the same loss with the means detached
    means = F.normalize(z1.mean(0), dim=-1).detach()
    F.cross_entropy(z1.reshape(6, 4) @ means.T / 0.07, torch.arange(3).repeat(2)).backward()
    assert not torch.allclose(z.grad, z1.grad)


@pytest.mark.parametrize("variant", ["crop_anchor", "mean_anchor"])
def test_decreases_under_gradient_descent(variant, descend):
    first, last = descend(lambda z: mcc_loss(z, tau=0.2, variant=variant))
    assert last < first - 0.2


def test_rejects_bad_arguments(unit_crops):
    z = unit_crops(2, 3, 4)
    with pytest.raises(ConfigError, match="tau"):
        mcc_loss(z, tau=0)
    with pytest.raises(ConfigError, match="variant"):
        mcc_loss(z, variant="nope")
    with pytest.raises(ValueError, match="at least 2 crops"):
        mcc_loss(z[:1])
    with pytest.raises(ValueError, match="shape"):
        mcc_loss(z[0])


def test_float32_under_bf16_autocast(unit_crops):
    z = unit_crops(2, 4, 8, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = mcc_loss(z.bfloat16())
    assert loss.dtype == torch.float32
