"""The evaluation protocol: training normalization, disjoint memory / validation / test subsets,
validation and health metrics, and evaluation leaving training untouched."""

import logging
import shutil

import numpy as np
import pytest
import torch

from streamssl import resolve
from streamssl.augment import CropDraws, CropParams, apply_crops, eval_transform
from streamssl.errors import ConfigError
from streamssl.ingest import prepare, read_manifest
from streamssl.train.evaluate import EvalData, evaluate_model, load_eval_data
from streamssl.train.learner import Learner
from streamssl.train.loop import run_loop
from streamssl.train.replay import total_updates

pytestmark = pytest.mark.single_thread


def test_eval_input_is_the_training_normalization_of_the_uncropped_image():
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    off = torch.zeros(3, dtype=torch.bool)
    identity = CropDraws(boxes=torch.tensor([[0.0, 0.0, 16.0, 16.0]]).repeat(3, 1), flip=off, jitter=off,
                         factors=torch.tensor([[1.0, 1.0, 1.0, 0.0]]).repeat(3, 1),
                         order=torch.arange(4).repeat(3, 1), gray=off, blur=off, sigma=torch.ones(3), solarize=off)
    trained_on = apply_crops(images, identity, CropParams(crops=1, size=16))[0]  # the default recipe's normalization
    assert torch.allclose(eval_transform(images), trained_on, atol=1e-6)
    assert eval_transform(images).min() < -0.9  # (x - 0.5) / 0.5, not a dataset's statistics


def _config(*overrides):
    return resolve.load("pipelines/smoke.yaml", list(overrides))


def _assert_disjoint(data: EvalData, train_dir, expected_sizes):
    memory, val, test = (set(data.keys[name]) for name in ("memory", "val", "test"))
    assert (len(memory), len(val), len(test)) == expected_sizes == (len(data.memory), len(data.val), len(data.test))
    assert memory.isdisjoint(val) and memory.isdisjoint(test) and val.isdisjoint(test)
    assert memory | val <= set(read_manifest(train_dir).key)  # both from the train split


def test_memory_validation_and_test_never_overlap_with_a_source_test_split(tmp_path):
    prepare("synthetic", None, tmp_path / "syn", classes=4, samples_per_class=10, size=16)
    data = load_eval_data(_config("eval.memory_samples=24", "eval.val_samples=10"), tmp_path / "syn")
    _assert_disjoint(data, tmp_path / "syn", (24, 10, 8))
    assert set(data.keys["test"]) == set(read_manifest(tmp_path / "syn" / "test").key)
    assert data.test_origin == "source-split"


def test_memory_validation_and_test_never_overlap_with_a_held_out_split(tmp_path, caplog, make_image_folder):
    folder = make_image_folder(tmp_path / "in", {"ant": 12, "bee": 12, "cow": 12}, size=16)
    prepare("imagefolder", folder, tmp_path / "ds", parallel=False)
    data = load_eval_data(_config("eval.memory_samples=20", "eval.val_samples=5"), tmp_path / "ds")
    _assert_disjoint(data, tmp_path / "ds", (20, 5, 6))  # 12 per class: 2 held out of each
    assert set(data.keys["test"]).isdisjoint(read_manifest(tmp_path / "ds").key) and data.test_origin == "held-out-1/6"
    # a dataset without any test split (prepared before held-out splits): test on the rest, with a warning
    shutil.rmtree(tmp_path / "ds" / "test")
    with caplog.at_level(logging.WARNING):
        data = load_eval_data(_config("eval.memory_samples=20", "eval.val_samples=5"), tmp_path / "ds")
    _assert_disjoint(data, tmp_path / "ds", (20, 5, 5))
    assert data.test_origin == "train-split" and "has no test split" in caplog.text


def test_validation_needs_images_the_memory_left(tmp_path):
    prepare("synthetic", None, tmp_path / "syn", classes=2, samples_per_class=8, size=16)
    with pytest.raises(ConfigError, match="eval.val_samples"):
        load_eval_data(_config("eval.memory_samples=16"), tmp_path / "syn")
    data = load_eval_data(_config("eval.memory_samples=16", "eval.val_samples=0"), tmp_path / "syn")
    assert len(data.val) == 0 and len(data.memory) == 16
    with pytest.raises(ConfigError, match="eval.val_samples"):
        _config("eval.val_samples=-1")


def _eval_data(n=24, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    images = lambda: torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)  # noqa: E731
    labels = lambda: torch.arange(n) % 4  # noqa: E731
    return EvalData(images(), labels(), images(), labels(), 4, images(), labels(), test_origin="held-out-1/6")


def test_evaluation_logs_validation_and_health_and_draws_no_training_randomness():
    config = _config("eval.bn=recalibrate", "method.crops=2")
    learner = Learner(config, torch.device("cpu"), total_updates=10)
    state = (torch.get_rng_state(), learner.aug_gen.get_state(), learner.buffer_gen.get_state(),
             {k: v.clone() for k, v in learner.method.state_dict().items()})
    result = evaluate_model(learner.method, _eval_data(), config, torch.device("cpu"), linear=True)
    assert torch.equal(torch.get_rng_state(), state[0]) and torch.equal(learner.aug_gen.get_state(), state[1])
    assert torch.equal(learner.buffer_gen.get_state(), state[2]) and learner.method.training
    assert all(torch.equal(v, state[3][k]) for k, v in learner.method.state_dict().items())
    assert result["knn_protocol"].endswith("memory=24 test=24 from=held-out-1/6 bn=recalibrated")
    assert "val=24 from=train-minus-memory" in result["val_knn_protocol"] and 0 <= result["val_knn"]["top1"] <= 1
    assert "from=held-out-1/6" in result["linear_protocol"]
    assert -1 <= result["health"]["crop_cosine"] <= 1 and 1 <= result["health"]["effective_rank"] <= 24
    again = evaluate_model(learner.method, _eval_data(), config, torch.device("cpu"))
    assert again["health"] == result["health"]  # the same crops at every evaluation


class Rows:
    """A logger that keeps (metric, value, samples_seen) rows."""

    def __init__(self):
        self.rows = []

    def log(self, metric, value, **at):
        self.rows.append((metric, value, at["samples_seen"]))

    def log_many(self, metric, values, **at):
        self.rows.append((metric, list(values), at["samples_seen"]))

    def values(self, metric):
        return [value for name, value, _ in self.rows if name == metric]


def _batches(count=4, b=16, size=16):
    g = np.random.default_rng(3)
    return [{"image": g.integers(0, 256, (b, size, size, 3), dtype=np.uint8), "label": np.arange(b) % 4,
             "key": np.array([f"s{i}_{j}" for j in range(b)]), "pos": np.arange(i * b, (i + 1) * b)}
            for i in range(count)]


@pytest.mark.parametrize("method", ["imai", "byol"])
def test_turning_evaluation_on_does_not_change_training(method):
    config = _config(f"method.name={method}", "method.crops=2" if method == "imai" else "method.tau_base=0.99",
                     "eval.bn=recalibrate", "eval.points=[0,0.25,0.5,0.75,1]", "eval.linear=points")
    losses = {}
    for evaluate in (False, True):
        logger = Rows()
        learner = Learner(config, torch.device("cpu"), total_updates(config, 64))
        run_loop(config, learner, _batches(), 64, _eval_data() if evaluate else None, logger, progress=False)
        losses[evaluate] = logger.values("train/loss")
        if evaluate:
            for metric in ("eval/knn_top1", "eval/val_knn_top1", "eval/crop_cosine", "eval/effective_rank"):
                assert [seen for name, _, seen in logger.rows if name == metric] == [0, 16, 32, 48, 64]
    assert len(losses[True]) == 4 and losses[True] == losses[False]
