"""k-nearest-neighbour classification of frozen features (docs/method-spec.md §4).

Two protocols:

* ``"scale"`` (default; SCALE's ``knn_eval``, which calls sklearn's ``KNeighborsClassifier``):
  features as they are (no normalization), Euclidean distance, the k nearest memory samples,
  uniform majority vote. Ties between classes with equal vote counts go to the smallest class id,
  as in sklearn: its ``predict`` takes ``argmax`` over ``predict_proba`` (columns are the sorted
  classes, ``argmax`` returns the first maximum), or ``scipy.stats.mode`` (the smallest of the tied
  values) on its older path; ``torch.argmax`` also returns the first maximum.
* ``"cosine"`` (EMP-SSL / solo-learn / SSOCL): L2-normalized features, the k most cosine-similar
  memory samples, votes weighted by ``exp(sim / temperature)`` and summed per class.

Test rows are processed ``chunk`` at a time, so memory stays at O(chunk * M) whatever T is.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PROTOCOLS = ("scale", "cosine")


def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor, *,
                k: int = 50, protocol: str = "scale", temperature: float = 0.07,
                num_classes: int | None = None, chunk: int = 1024) -> torch.Tensor:
    """Predict a class for every test row from its k nearest labelled memory rows.

    Args:
        train_feats: [M, D] labelled memory features.
        train_labels: [M] integer class ids in [0, num_classes).
        test_feats: [T, D] features to classify (same device as train_feats).
        k: neighbours per test row; clamped to M (sklearn would refuse k > M).
        protocol: "scale" (Euclidean, uniform vote) or "cosine" (exp(sim/T)-weighted vote).
        temperature: the cosine protocol's T; ignored by "scale".
        num_classes: C; defaults to max(train_labels) + 1.
        chunk: test rows per block (bounds memory at chunk * M distances).

    Returns:
        LongTensor [T] of predicted class ids, on train_feats' device.
    """
    _check_inputs(train_feats, train_labels, test_feats, k, protocol, temperature, chunk)
    num_classes = int(train_labels.max()) + 1 if num_classes is None else int(num_classes)
    k = min(int(k), train_feats.shape[0])
    labels = train_labels.to(device=train_feats.device, dtype=torch.long)
    if train_feats.dtype != torch.float64:
        train_feats = train_feats.float()  # half-precision distances would reorder near neighbours
    if protocol == "cosine":
        train_feats = F.normalize(train_feats, dim=1)
    bank_sq = train_feats.pow(2).sum(1)
    out = [_predict_chunk(train_feats, bank_sq, labels, block, k, protocol, temperature, num_classes)
           for block in test_feats.split(chunk)]
    return torch.cat(out) if out else labels.new_empty(0)


def _predict_chunk(bank: torch.Tensor, bank_sq: torch.Tensor, labels: torch.Tensor, block: torch.Tensor,
                   k: int, protocol: str, temperature: float, num_classes: int) -> torch.Tensor:
    """Votes for one [t, D] block of test rows -> LongTensor [t]."""
    block = block.to(device=bank.device, dtype=bank.dtype)
    if protocol == "scale":
        # ||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2; ||a||^2 is constant per test row, so it cannot
        # change the ranking and is left out: one matmul instead of a [t, M, D] difference.
        # Which of several equidistant samples fills the k-th slot is unspecified, as in sklearn.
        score = 2.0 * block @ bank.T - bank_sq
        _, idx = score.topk(k, dim=1)
        weights = torch.ones(idx.shape, dtype=bank.dtype, device=bank.device)
    else:
        sim = F.normalize(block, dim=1) @ bank.T
        top_sim, idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
    votes = torch.zeros(block.shape[0], num_classes, dtype=bank.dtype, device=bank.device)
    votes.scatter_add_(1, labels[idx], weights)
    return votes.argmax(dim=1)  # first maximum = smallest class id among ties


def _check_inputs(train_feats, train_labels, test_feats, k, protocol, temperature, chunk) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"knn protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"knn features must be [M, D] and [T, D]; got {tuple(train_feats.shape)} "
                         f"and {tuple(test_feats.shape)}")
    if train_labels.shape != (train_feats.shape[0],):
        raise ValueError(f"knn train_labels must be [{train_feats.shape[0]}], "
                         f"got {tuple(train_labels.shape)}")
    if train_feats.shape[0] == 0:
        raise ValueError("knn memory is empty")
    if k < 1 or chunk < 1:
        raise ValueError(f"knn k and chunk must be >= 1, got k={k}, chunk={chunk}")
    if protocol == "cosine" and temperature <= 0:
        raise ValueError(f"knn temperature must be > 0, got {temperature}")


def knn_accuracy(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                 test_labels: torch.Tensor, *, num_classes: int | None = None, **kwargs) -> dict:
    """Top-1 and per-class accuracy of `knn_predict` on a labelled test set.

    Args:
        train_feats, train_labels, test_feats: as for `knn_predict`.
        test_labels: [T] true class ids.
        num_classes: C; defaults to 1 + the largest label in memory or test.
        **kwargs: k, protocol, temperature, chunk (see `knn_predict`).

    Returns:
        dict(top1=float in [0, 1], per_class=float64 ndarray [C], NaN for classes absent from test).
    """
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    pred = knn_predict(train_feats, train_labels, test_feats, num_classes=num_classes, **kwargs)
    return accuracy_from_predictions(pred, test_labels, num_classes)


def accuracy_from_predictions(pred: torch.Tensor, truth: torch.Tensor, num_classes: int) -> dict:
    """dict(top1, per_class [C] with NaN for classes absent from `truth`) of predicted labels [T]."""
    pred, truth = pred.cpu(), truth.cpu().long()
    correct = (pred == truth).double()
    total = torch.bincount(truth, minlength=num_classes).double()
    hits = torch.bincount(truth, weights=correct, minlength=num_classes)
    per_class = np.full(num_classes, np.nan)
    present = (total > 0).numpy()
    per_class[present] = (hits[present] / total[present]).numpy()
    top1 = float(correct.mean()) if len(truth) else float("nan")
    return {"top1": top1, "per_class": per_class}


def protocol_name(protocol: str, k: int, memory: int, test: int, temperature: float = 0.07,
                  origin: str | None = None, scored: str = "test") -> str:
    """The `protocol` string stored with every kNN metric row.

    Example: ``protocol_name("scale", 50, 1000, 5000)`` ->
    ``"knn:scale k=50 euclidean uniform memory=1000 test=5000"``. `origin` says where the scored
    images come from and adds ``from=ORIGIN``: ``source-split`` (the source's test split),
    ``held-out-1/6`` (held out of the samples by `prepare`), ``train-split`` (training images:
    the dataset has no test split), ``train-minus-memory`` (the validation subset). `scored`
    names the scored subset: ``test`` or ``val``.
    """
    if protocol == "scale":
        rule = "euclidean uniform"
    elif protocol == "cosine":
        rule = f"cosine exp(sim/{temperature:g})"
    else:
        raise ValueError(f"knn protocol must be one of {PROTOCOLS}, got {protocol!r}")
    where = f" from={origin}" if origin else ""
    return f"knn:{protocol} k={k} {rule} memory={memory} {scored}={test}{where}"
