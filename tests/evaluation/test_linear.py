import numpy as np
import pytest
import torch

from streamssl.evaluation import linear_probe, protocol_name_linear


def _blobs(n_per_class=40, classes=4, d=16, spread=0.3, seed=0):
    """Gaussian blobs around random class centres, with a large offset and scale per dimension."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g) * 3
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    feats = centres[labels] + spread * torch.randn(len(labels), d, generator=g)
    # standardization must undo this, or lr 0.1 would diverge on the 100x dimensions
    return feats * torch.logspace(-2, 2, d) + 50, labels


def test_separable_data_is_learned_perfectly():
    x, y = _blobs()
    tx, ty = _blobs(n_per_class=10, seed=0)
    out = linear_probe(x, y, tx, ty, num_classes=4, epochs=30)
    assert out["top1"] == 1.0
    np.testing.assert_array_equal(out["per_class"], np.ones(4))


def test_generalizes_to_held_out_samples_of_the_same_blobs():
    x, y = _blobs(n_per_class=60, spread=1.0)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    train, test = perm[:160], perm[160:]
    out = linear_probe(x[train], y[train], x[test], y[test], num_classes=4, epochs=30)
    assert out["top1"] > 0.9


def test_random_labels_give_chance_on_test():
    g = torch.Generator().manual_seed(0)
    x, tx = torch.randn(400, 32, generator=g), torch.randn(2000, 32, generator=g)
    y, ty = torch.randint(0, 4, (400,), generator=g), torch.randint(0, 4, (2000,), generator=g)
    out = linear_probe(x, y, tx, ty, num_classes=4, epochs=20)
    assert 0.2 < out["top1"] < 0.3


def test_same_seed_same_result_other_seed_other_model():
    x, y = _blobs(spread=3.0)
    tx, ty = _blobs(n_per_class=50, spread=3.0, seed=0)
    kwargs = dict(num_classes=4, epochs=3, batch_size=16)
    a = linear_probe(x, y, tx, ty, seed=0, **kwargs)
    b = linear_probe(x, y, tx, ty, seed=0, **kwargs)
    assert a["top1"] == b["top1"] and np.array_equal(a["per_class"], b["per_class"])
    others = {linear_probe(x, y, tx, ty, seed=s, **kwargs)["top1"] for s in range(1, 6)}
    assert others != {a["top1"]}


def test_absent_test_classes_are_nan_and_constant_features_are_harmless():
    x, y = _blobs(classes=3)
    x[:, 0] = 7.0  # a constant dimension: std 0
    keep = y < 2
    out = linear_probe(x, y, x[keep], y[keep], num_classes=3, epochs=10)
    assert out["top1"] == 1.0 and np.isnan(out["per_class"][2]) and np.isfinite(out["per_class"][:2]).all()


def test_matches_torch_sgd_with_cosine_annealing():
    """The hand-written gradient step equals nn.Linear + SGD(momentum 0.9) + CosineAnnealingLR."""
    x, y = _blobs(n_per_class=8, classes=3, d=5, spread=2.0)
    x64 = x.double()
    out = linear_probe(x64, y, x64, y, num_classes=3, epochs=4, lr=0.3, batch_size=7, weight_decay=0.01, seed=5)
    xs = (x64 - x64.mean(0)) / x64.std(0, correction=0)
    model = torch.nn.Linear(5, 3).double()
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    g = torch.Generator().manual_seed(5)
    for _ in range(4):
        for idx in torch.randperm(len(y), generator=g).split(7):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    expected = (model(xs).argmax(1) == y).double().mean().item()
    assert out["top1"] == pytest.approx(expected)


def test_protocol_name():
    assert protocol_name_linear(100, 0.1, 1000, 5000) == "linear epochs=100 lr=0.1 sgd cosine memory=1000 test=5000"
    assert "wd=5e-05" in protocol_name_linear(100, 0.03, 10, 20, weight_decay=5e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_classes=2), r"\[0, 2\)"),
    (dict(num_classes=4, epochs=0), "epochs"),
    (dict(num_classes=4, lr=-1.0), "lr"),
])
def test_rejects_bad_arguments(kwargs, match):
    x, y = _blobs()
    with pytest.raises(ValueError, match=match):
        linear_probe(x, y, x, y, **kwargs)


def test_rejects_mismatched_shapes():
    x, y = _blobs()
    with pytest.raises(ValueError, match="features"):
        linear_probe(x, y, x[:, :3], y, num_classes=4)
    with pytest.raises(ValueError, match="labels"):
        linear_probe(x, y[:5], x, y, num_classes=4)
