import math

import pytest
import torch
import torch.nn.functional as F

from streamssl.losses import nt_xent_loss


def naive_nt_xent(z1, z2, temperature, z1_all=None, z2_all=None, offset=0):
    """SimCLR's definition, one anchor at a time: -log exp(s_pos/T) / sum_{k != i} exp(s_ik/T)."""
    z1_all = z1 if z1_all is None else z1_all
    z2_all = z2 if z2_all is None else z2_all
    keys = [F.normalize(v, dim=0) for v in torch.cat([z1_all, z2_all])]
    n, b = z1_all.shape[0], z1.shape[0]
    total = 0.0
    for view, z in enumerate((z1, z2)):
        for j in range(b):
            q = F.normalize(z[j], dim=0)
            own = view * n + offset + j
            pos = (1 - view) * n + offset + j
            denom = sum(math.exp(float(q @ k) / temperature) for i, k in enumerate(keys) if i != own)
            total += -(float(q @ keys[pos]) / temperature - math.log(denom))
    return total / (2 * b)


def _views(b=5, d=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 2.0])
def test_equals_naive_loop(temperature):
    z1, z2 = _views()
    loss = nt_xent_loss(z1, z2, temperature)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(naive_nt_xent(z1, z2, temperature), rel=1e-10)


def test_gathered_negatives_equal_naive_loop_with_offset():
    z1, z2 = _views(b=3)
    z1_all, z2_all = _views(b=9, seed=1)
    z1_all[3:6], z2_all[3:6] = z1, z2  # this worker is rank 1 of 3
    loss = nt_xent_loss(z1, z2, 0.5, z1_all=z1_all, z2_all=z2_all, offset=3)
    assert loss.item() == pytest.approx(naive_nt_xent(z1, z2, 0.5, z1_all, z2_all, 3), rel=1e-10)


def test_workers_average_to_the_single_process_loss():
    z1, z2 = _views(b=6)
    parts = [nt_xent_loss(z1[r:r + 2], z2[r:r + 2], 0.5, z1_all=z1, z2_all=z2, offset=r) for r in (0, 2, 4)]
    assert (sum(parts) / 3).item() == pytest.approx(nt_xent_loss(z1, z2, 0.5).item(), rel=1e-10)


def test_rank_gradients_average_to_the_global_batch_gradient():
    """Three simulated ranks with a differentiable gather: the DDP average is the full-batch gradient."""
    z1, z2 = (t.requires_grad_() for t in _views(b=6))
    full = torch.autograd.grad(nt_xent_loss(z1, z2, 0.5), [z1, z2])
    ranks = [nt_xent_loss(z1[r:r + 2], z2[r:r + 2], 0.5, z1_all=z1, z2_all=z2, offset=r) for r in (0, 2, 4)]
    averaged = torch.autograd.grad(sum(ranks) / 3, [z1, z2])
    assert all(torch.allclose(a, f, rtol=1e-10) for a, f in zip(averaged, full))


def test_detached_gathered_keys_still_train_the_local_rows():
    z1, z2 = (t.requires_grad_() for t in _views(b=2))
    z1_all, z2_all = _views(b=4, seed=1)  # plain all_gather output: no grad
    loss = nt_xent_loss(z1, z2, 0.5, z1_all=z1_all, z2_all=z2_all, offset=2)
    g1, g2 = torch.autograd.grad(loss, [z1, z2])
    assert g1.abs().sum() > 0 and g2.abs().sum() > 0
    moved = nt_xent_loss(z1, z2, 0.5, z1_all=z1_all.roll(1, 0), z2_all=z2_all, offset=2)
    assert moved.item() != pytest.approx(loss.item())  # the non-local rows are real negatives


def test_invariant_to_scale_and_batch_order():
    z1, z2 = _views()
    perm = torch.tensor([3, 0, 4, 1, 2])
    base = nt_xent_loss(z1, z2).item()
    assert nt_xent_loss(3 * z1[perm], 0.2 * z2[perm]).item() == pytest.approx(base, rel=1e-10)


def test_perfect_alignment_reaches_the_lower_bound():
    z = F.normalize(torch.eye(4, dtype=torch.float64), dim=1)  # orthogonal samples, identical views
    temperature = 0.1
    # per anchor: -1/T + log(e^{1/T} + (2b - 2) e^0)
    expected = -1 / temperature + math.log(math.exp(1 / temperature) + 6)
    assert nt_xent_loss(z, z.clone(), temperature).item() == pytest.approx(expected, rel=1e-12)


def test_decreases_under_gradient_descent(descend):
    first, last = descend(lambda z: nt_xent_loss(z[0], z[1], 0.5), n_crops=2, b=8)
    assert last < first - 0.1


def test_bf16_inputs_are_upcast():
    z1, z2 = _views()
    loss = nt_xent_loss(z1.bfloat16(), z2.bfloat16(), 0.5)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(nt_xent_loss(z1, z2, 0.5).item(), abs=0.02)


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=0.0), "temperature"),
    (dict(z1_all=torch.zeros(5, 7)), "both"),
    (dict(offset=1), "offset"),
    (dict(z1_all=torch.zeros(6, 7), z2_all=torch.zeros(6, 7), offset=2), "does not fit"),
    (dict(z1_all=torch.zeros(6, 3), z2_all=torch.zeros(6, 3)), r"\(n, 7\)"),
])
def test_rejects_bad_arguments(kwargs, match):
    z1, z2 = _views()
    with pytest.raises(ValueError, match=match):
        nt_xent_loss(z1.float(), z2.float(), **kwargs)


def test_rejects_mismatched_views():
    z1, z2 = _views()
    with pytest.raises(ValueError, match="nt_xent_loss"):
        nt_xent_loss(z1, z2[:3])


def _rank_grads(rank, world, init_file, z1, z2, out):
    import torch.distributed as dist

    from streamssl.methods.simclr import gather_views

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        b = z1.shape[0] // world
        a1, a2 = (z[rank * b:(rank + 1) * b].clone().requires_grad_() for z in (z1, z2))
        loss = nt_xent_loss(a1, a2, 0.5, **gather_views(a1, a2))
        loss.backward()
        torch.save((loss.detach(), a1.grad, a2.grad), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_gather_views_across_two_gloo_ranks_gives_the_global_gradient(tmp_path):
    """SimCLR's cross-worker negatives: 2 real ranks, averaged as DDP does, equal one big batch."""
    import torch.multiprocessing as mp

    z1, z2 = (t.float() for t in _views(b=4, d=5))
    out = tmp_path / "grads"
    # fork, not spawn: the children need no fresh interpreter and torch import (17 s -> ~1 s)
    mp.start_processes(_rank_grads, args=(2, tmp_path / "init", z1, z2, out), nprocs=2, start_method="fork")
    parts = [torch.load(f"{out}.{r}") for r in range(2)]
    f1, f2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    full = nt_xent_loss(f1, f2, 0.5)
    full.backward()
    assert (parts[0][0] + parts[1][0]).item() / 2 == pytest.approx(full.item(), rel=1e-5)
    # rank r holds rows 2r, 2r+1; DDP divides the summed gradients by the world size
    torch.testing.assert_close(torch.cat([parts[0][1], parts[1][1]]) / 2, f1.grad)
    torch.testing.assert_close(torch.cat([parts[0][2], parts[1][2]]) / 2, f2.grad)
