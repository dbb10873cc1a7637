"""The out-of-fold loss scorer on a dataset of clean and pure-noise samples."""

import json

import numpy as np
import pandas as pd
import pytest

from streamssl.scoring import score_dataset

TINY = {"epochs": 6, "batch_size": 16, "image_size": 8}  # 36 training images per fold, 8x8 inputs


def test_noise_scores_higher_loss_than_clean_samples(easy_hard, one_thread):
    folder, noisy = easy_hard
    before = pd.read_parquet(folder / "manifest.parquet")
    summary = score_dataset(folder, "loss", seed=0, progress=False, **TINY)
    after = pd.read_parquet(folder / "manifest.parquet")
    assert list(after.columns) == [*before.columns, "difficulty_loss"]
    pd.testing.assert_frame_equal(after[before.columns], before)  # rows, order and columns untouched
    loss = after["difficulty_loss"].to_numpy()
    assert after["difficulty_loss"].dtype == np.float32 and np.isfinite(loss).all()
    assert np.median(loss[noisy]) > 1.5 * np.median(loss[~noisy])
    assert summary["num_samples"] == len(before) and summary["column"] == "difficulty_loss"
    assert summary["min"] == pytest.approx(loss.min())


def test_same_seed_same_scores_and_record_in_dataset_json(easy_hard, one_thread):
    folder, _ = easy_hard
    quick = {**TINY, "epochs": 1}
    first = score_dataset(folder, "loss", seed=3, progress=False, folds=3, **quick)
    again = score_dataset(folder, "loss", seed=3, progress=False, folds=3, **quick)
    assert first["sha256"] == again["sha256"]
    record = json.loads((folder / "dataset.json").read_text())["scores"]["difficulty_loss"]
    assert record["method"] == "loss" and record["seed"] == 3 and record["params"]["folds"] == 3
    assert record["sha256"] == first["sha256"]
    other = score_dataset(folder, "loss", seed=4, progress=False, folds=3, **quick)
    assert other["sha256"] != first["sha256"]


def test_global_rng_is_left_alone(easy_hard, one_thread):
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    score_dataset(easy_hard[0], "loss", seed=0, progress=False, epochs=1, image_size=8)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("params, word", [
    ({"folds": 1}, "folds"), ({"epochs": 0}, "epochs"), ({"image_size": 4}, "image_size"),
    ({"epochs": 2.5}, "integer"), ({"momentum": 0.9}, "momentum"),
])
def test_bad_settings_are_config_errors(easy_hard, params, word):
    from streamssl.errors import ConfigError

    with pytest.raises(ConfigError, match=word):
        score_dataset(easy_hard[0], "loss", progress=False, **params)
