import math

import pytest
import torch
import torch.nn.functional as F

from streamssl.losses import psc_loss, similarity_mask


def naive_mask(h, n_stream, tau, ratio, normalize=True):
    """SCALE's recipe written out: a loop over the 4 view pairs and over every (i, j) entry."""
    v, b, _ = h.shape
    f = F.normalize(h, dim=-1) if normalize else h
    total = [[0.0] * b for _ in range(b)]
    for vi in range(v):
        for vj in range(v):
            t = [[-(2 - 2 * float(f[vi, i] @ f[vj, j])) / tau - (1000.0 if i == j else 0.0) for j in range(b)]
                 for i in range(b)]
            row_den = [sum(math.exp(x) for x in t[i]) for i in range(b)]
            col_den = [sum(math.exp(t[i][j]) for i in range(b)) for j in range(b)]
            for i in range(b):
                for j in range(b):
                    p = 0.5 * math.exp(t[i][j]) / row_den[i] + 0.5 * math.exp(t[i][j]) / col_den[j]
                    total[i][j] += p / (v * v)
    off = [total[i][j] for i in range(b) for j in range(b) if i != j]
    mean, top = sum(off) / len(off), max(off)
    thres = mean + ratio * (top - mean)
    return [[i < n_stream and j < n_stream and (i == j or total[i][j] > thres) for j in range(b)]
            for i in range(b)]


def naive_psc(z, mask, n_stream, temperature, base_temperature):
    """SupCon one anchor at a time: -(T/T0) * mean over positives of log softmax over all others."""
    _, b, _ = z.shape
    keys = [F.normalize(z[v, i], dim=0) for v in range(2) for i in range(b)]
    losses = []
    for a in range(2 * b):
        if a % b >= n_stream:
            continue
        others = [k for k in range(2 * b) if k != a]
        logits = {k: float(keys[a] @ keys[k]) / temperature for k in others}
        log_den = math.log(sum(math.exp(x) for x in logits.values()))
        pos = [k for k in others if mask[a % b][k % b]]
        losses.append(-(temperature / base_temperature) * sum(logits[k] - log_den for k in pos) / len(pos))
    return sum(losses) / len(losses)


def _feats(v, b, d, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(v, b, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("normalize, scale, ratio", [(True, 1.0, 0.1), (True, 1.0, 0.3), (False, 0.3, 0.1)])
def test_mask_equals_naive_loop(normalize, scale, ratio):
    h = _feats(2, 7, 5, scale=scale)
    h[1] = h[0] + 0.1 * _feats(1, 7, 5, seed=1)[0]  # two views of the same samples: similar, not equal
    mask = similarity_mask(h, n_stream=4, tsne_temperature=0.1, thres_ratio=ratio, normalize=normalize)
    assert mask.dtype == torch.bool and mask.shape == (7, 7)
    assert mask.tolist() == naive_mask(h, 4, 0.1, ratio, normalize)


def test_mask_keeps_positives_inside_the_stream_block_only():
    h = _feats(2, 8, 4, seed=3)
    h[:, 4:] = h[:, :4]  # memory rows duplicate stream rows: the most similar pairs are stream x memory
    mask = similarity_mask(h, n_stream=4)
    assert mask[:4, :4].diagonal().all() and not mask[4:].any() and not mask[:, 4:].any()


def test_mask_finds_planted_clusters():
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(2, 16, generator=g, dtype=torch.float64), dim=1)
    h = centres[torch.tensor([0, 0, 0, 1, 1, 1])] + 0.01 * torch.randn(2, 6, 16, generator=g, dtype=torch.float64)
    mask = similarity_mask(h, n_stream=6, thres_ratio=0.0)
    same = torch.tensor([0, 0, 0, 1, 1, 1])
    assert torch.equal(mask, same[:, None] == same[None, :])


def test_psc_equals_naive_loop():
    z = _feats(2, 6, 5, seed=2)
    mask = torch.eye(6, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = mask[2, 3] = True  # asymmetric on purpose
    mask[4:] = False
    loss = psc_loss(z, mask, n_stream=4, temperature=0.1, base_temperature=0.07)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(naive_psc(z, mask.tolist(), 4, 0.1, 0.07), rel=1e-10)


def test_identity_mask_is_nt_xent_scaled():
    """With only the other view as positive and every sample a stream anchor, PSC = (T/T0) NT-Xent."""
    from streamssl.losses import nt_xent_loss

    z = _feats(2, 5, 4, seed=4)
    loss = psc_loss(z, torch.eye(5, dtype=torch.bool), n_stream=5, temperature=0.2, base_temperature=0.07)
    assert loss.item() == pytest.approx(0.2 / 0.07 * nt_xent_loss(z[0], z[1], 0.2).item(), rel=1e-10)


def test_memory_rows_only_change_the_denominator():
    z = _feats(2, 6, 5, seed=5)
    mask = similarity_mask(z, n_stream=3)
    base = psc_loss(z, mask, n_stream=3)
    z2 = z.clone()
    z2[:, 3:] = _feats(2, 3, 5, seed=6)  # other memory samples: other negatives
    assert psc_loss(z2, mask, n_stream=3).item() != pytest.approx(base.item())


def test_decreases_under_gradient_descent(descend):
    mask = torch.eye(8, dtype=torch.bool)
    mask[:2, :2] = True
    mask[6:] = False
    first, last = descend(lambda z: psc_loss(z, mask, n_stream=6), n_crops=2, b=8)
    assert last < first - 0.1


def test_bf16_inputs_are_upcast():
    z = _feats(2, 6, 5, seed=7)
    mask = similarity_mask(z, n_stream=4)
    loss = psc_loss(z.bfloat16(), mask, n_stream=4)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(psc_loss(z, mask, n_stream=4).item(), abs=0.05)


@pytest.mark.parametrize("call, match", [
    (lambda: similarity_mask(torch.zeros(2, 1, 4), 1), "b >= 2"),
    (lambda: similarity_mask(torch.zeros(2, 4, 4), 5), "n_stream"),
    (lambda: similarity_mask(torch.zeros(2, 4, 4), 2, tsne_temperature=0), "tsne_temperature"),
    (lambda: psc_loss(torch.zeros(3, 4, 4), torch.eye(4, dtype=torch.bool), 2), "2 views"),
    (lambda: psc_loss(torch.zeros(2, 4, 4), torch.eye(4), 2), "bool"),
    (lambda: psc_loss(torch.zeros(2, 4, 4), torch.eye(4, dtype=torch.bool), 0), "n_stream"),
    (lambda: psc_loss(torch.zeros(2, 4, 4), torch.eye(4, dtype=torch.bool), 2, temperature=0), "temperatures"),
])
def test_rejects_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
