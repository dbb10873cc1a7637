"""The online supervised reference learner: its loss against a naive cross-entropy, labels from the buffer,
the classifier sized by the dataset."""

import math

import pytest
import torch

from streamssl import resolve
from streamssl.augment import multicrop
from streamssl.errors import ConfigError
from streamssl.resolve import build_method, with_dataset_classes
from streamssl.train.learner import Learner

SMOKE = "pipelines/smoke.yaml"


pytestmark = pytest.mark.single_thread


def _config(**extra):
    return resolve.load(SMOKE, {"method.name": "supervised", "method.classes": 4, **extra})


def _images(b, seed=0):
    return torch.randint(0, 256, (b, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_loss_and_per_sample_losses_match_a_naive_cross_entropy():
    method = build_method(_config(**{"method.crops": 3})).eval()  # eval: BatchNorm as a fixed map
    images, labels = _images(5), torch.tensor([0, 3, 1, 1, 2])
    out = method.step(images, torch.Generator().manual_seed(4), labels)
    crops = multicrop(images, method.crop_params, torch.Generator().manual_seed(4))  # the same draws
    per_image = []
    with torch.no_grad():
        for j in range(5):
            terms = []
            for i in range(3):
                logits = method.classifier(method.backbone(crops[i, j:j + 1]))[0]
                terms.append(-(logits[labels[j]] - math.log(sum(math.exp(v) for v in logits.tolist()))))
            per_image.append(sum(terms) / 3)
    want = torch.tensor(per_image)
    assert torch.allclose(out.sample_loss, want, atol=1e-4)
    assert math.isclose(out.loss.item(), want.mean().item(), rel_tol=1e-4)
    assert out.features.shape == (5, method.backbone_dim) == (5, method.proj_dim)


def test_a_label_outside_the_classifier_is_one_line_naming_method_classes():
    method = build_method(_config())
    with pytest.raises(ConfigError, match=r"^method\.classes: 4 classes, but the stream holds label 7$"):
        method.step(_images(2), torch.Generator(), torch.tensor([1, 7]))


def test_classes_come_from_the_dataset_unless_set():
    unset = resolve.load(SMOKE, {"method.name": "supervised"})
    assert unset.method.get("classes", 0) == 0
    with pytest.raises(ConfigError, match=r"^method\.classes: the supervised learner needs"):
        build_method(unset)
    assert with_dataset_classes(unset, 10).method["classes"] == 10
    assert build_method(with_dataset_classes(unset, 10)).classifier.out_features == 10
    assert with_dataset_classes(_config(), 10).method["classes"] == 4  # explicit wins
    imai = resolve.load(SMOKE, {"method.name": "imai"})
    assert with_dataset_classes(imai, 10) is imai


def test_the_learner_hands_the_buffer_labels_to_step_and_learns_them():
    learner = Learner(_config(**{"learner.k": 4, "learner.lars": False, "learner.lr": 0.05}),
                      torch.device("cpu"), total_updates=40)
    seen = []
    step = learner.method.step
    learner.method.step = lambda images, gen, labels: seen.append(labels.clone()) or step(images, gen, labels)
    # two classes told apart by brightness alone: a classifier that reads the labels learns it at once
    dark, bright = _images(16, 1) // 4, 192 + _images(16, 2) // 4
    images, labels = torch.cat([dark, bright]), torch.tensor([0] * 16 + [3] * 16)
    order = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    results = []
    for i in range(4):
        rows = order[8 * i:8 * i + 8]
        results += learner.observe(images[rows], [f"k{i}_{j}" for j in range(8)], labels[rows])
    first = seen[0]
    assert sorted(first.tolist()) == sorted(labels[order[:8]].tolist())
    assert all(torch.isin(s, torch.tensor([0, 3])).all() for s in seen)
    assert results[-1].loss < results[0].loss
