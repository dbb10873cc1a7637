"""kNN classification against naive loops, tie-breaking, weighting and chunking."""

from collections import Counter

import numpy as np
import pytest
import torch

from streamssl.evaluation.knn import PROTOCOLS, knn_accuracy, knn_predict, protocol_name


def _data(m=40, t=15, d=5, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    train = torch.randn(m, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (m,), generator=g)
    test = torch.randn(t, d, generator=g, dtype=torch.float64)
    return train, labels, test


def _naive_scale(train, labels, test, k):
    preds = []
    for row in test:
        dists = [float(((row - x) ** 2).sum().sqrt()) for x in train]
        nearest = sorted(range(len(train)), key=lambda i: dists[i])[:k]
        counts = Counter(int(labels[i]) for i in nearest)
        best = max(counts.values())
        preds.append(min(c for c, n in counts.items() if n == best))  # sklearn: smallest tied class
    return torch.tensor(preds)


def _naive_cosine(train, labels, test, k, temperature, c):
    preds = []
    for row in test:
        sims = [float(row @ x / (row.norm() * x.norm())) for x in train]
        nearest = sorted(range(len(train)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * c
        for i in nearest:
            votes[int(labels[i])] += np.exp(sims[i] / temperature)
        preds.append(int(np.argmax(votes)))
    return torch.tensor(preds)


@pytest.mark.parametrize("k", [1, 7, 40])
def test_scale_equals_naive_loop(k):
    train, labels, test = _data()
    got = knn_predict(train, labels, test, k=k, protocol="scale", chunk=4)
    assert torch.equal(got, _naive_scale(train, labels, test, k))


def test_cosine_equals_naive_loop():
    train, labels, test = _data(seed=1)
    got = knn_predict(train, labels, test, k=9, protocol="cosine", temperature=0.2, num_classes=4, chunk=5)
    assert torch.equal(got, _naive_cosine(train, labels, test, 9, 0.2, 4))


def test_vote_tie_goes_to_smallest_class():
    train = torch.tensor([[0.0], [1.0], [10.0]])
    labels = torch.tensor([3, 1, 0])
    assert knn_predict(train, labels, torch.tensor([[0.4]]), k=2).tolist() == [1]


def test_k1_on_the_memory_itself_is_perfect():
    train, labels, _ = _data(m=60, seed=2)
    result = knn_accuracy(train, labels, train, labels, k=1)
    assert result["top1"] == 1.0
    assert np.all(result["per_class"] == 1.0)


def test_cosine_votes_are_weighted_by_similarity():
    # one near-identical neighbour of class 0 outweighs two distant ones of class 1 at T=0.07,
    # while a uniform vote over the same 3 neighbours picks class 1.
    train = torch.tensor([[1.0, 0.0], [0.5, 0.866], [0.5, -0.866]])
    labels = torch.tensor([0, 1, 1])
    test = torch.tensor([[1.0, 0.01]])
    assert knn_predict(train, labels, test, k=3, protocol="cosine", temperature=0.07).tolist() == [0]
    assert knn_predict(train, labels, test, k=3, protocol="scale").tolist() == [1]
    # a high temperature flattens the weights back to a near-uniform vote
    assert knn_predict(train, labels, test, k=3, protocol="cosine", temperature=100.0).tolist() == [1]


def test_cosine_ignores_feature_norms_scale_does_not():
    train, labels, test = _data(m=50, t=30, seed=3)
    scales = torch.linspace(0.1, 10.0, len(train), dtype=torch.float64)[:, None]
    base = knn_predict(train, labels, test, k=5, protocol="cosine")
    assert torch.equal(knn_predict(train * scales, labels, test * 3, k=5, protocol="cosine"), base)
    scaled = knn_predict(train * scales, labels, test, k=5)
    assert not torch.equal(scaled, knn_predict(train, labels, test, k=5))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_chunking_does_not_change_predictions(protocol):
    train, labels, test = _data(m=80, t=37, d=8, seed=4)
    whole = knn_predict(train, labels, test, k=11, protocol=protocol, chunk=1000)
    for chunk in (1, 3, 36):
        assert torch.equal(knn_predict(train, labels, test, k=11, protocol=protocol, chunk=chunk), whole)


def test_accuracy_per_class_and_absent_classes():
    train = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    labels = torch.tensor([0, 0, 2, 2])
    test = torch.tensor([[0.05], [5.05], [0.02], [4.9]])
    truth = torch.tensor([0, 2, 2, 2])  # the third one is misclassified as 0
    result = knn_accuracy(train, labels, test, truth, k=1, num_classes=4)
    assert result["top1"] == 0.75
    np.testing.assert_allclose(result["per_class"], [1.0, np.nan, 2 / 3, np.nan])


def test_k_larger_than_memory_uses_all_of_it():
    train, labels, test = _data(m=6, seed=5)
    assert torch.equal(knn_predict(train, labels, test, k=50), knn_predict(train, labels, test, k=6))


def test_bad_arguments_are_rejected():
    train, labels, test = _data()
    with pytest.raises(ValueError, match="protocol"):
        knn_predict(train, labels, test, protocol="manhattan")
    with pytest.raises(ValueError, match=r"\[M, D\]"):
        knn_predict(train, labels, test[:, :3])
    with pytest.raises(ValueError, match="temperature"):
        knn_predict(train, labels, test, protocol="cosine", temperature=0.0)


def test_protocol_name():
    assert protocol_name("scale", 50, 1000, 5000) == "knn:scale k=50 euclidean uniform memory=1000 test=5000"
    expected = "knn:cosine k=20 cosine exp(sim/0.07) memory=500 test=100"
    assert protocol_name("cosine", 20, 500, 100, 0.07) == expected
