"""The class-distance scorer: a fixed pixel feature space, distance to the class mean."""

import numpy as np
import pandas as pd
import pytest
import torch

from streamssl.scoring import score_dataset
from streamssl.scoring.class_distance import pixel_features


def test_pixel_features_are_centred_unit_vectors_blind_to_brightness():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (1, 4, 4, 3), dtype=np.uint8)
    feats = pixel_features(np.concatenate([image, image + 40, np.full_like(image, 7)]))
    assert feats.shape == (3, 48)
    assert torch.allclose(feats[0], feats[1], atol=1e-6)  # a brightness shift changes nothing
    assert torch.allclose(feats[:2].norm(dim=1), torch.ones(2)) and torch.allclose(feats[:2].sum(1), torch.zeros(2),
                                                                                    atol=1e-5)
    assert torch.equal(feats[2], torch.zeros(48))  # a constant image has no pattern


@pytest.mark.parametrize("cache_bytes", [1 << 30, 0])  # features kept in memory / decoded twice
def test_noise_is_farther_from_its_class_mean(easy_hard, cache_bytes):
    folder, noisy = easy_hard
    before = pd.read_parquet(folder / "manifest.parquet")
    summary = score_dataset(folder, "class-distance", progress=False, cache_bytes=cache_bytes)
    after = pd.read_parquet(folder / "manifest.parquet")
    pd.testing.assert_frame_equal(after[before.columns], before)
    dist = after["difficulty_class_distance"].to_numpy()
    assert len(dist) == len(before) and dist.min() >= 0 and dist.max() <= 2
    assert dist[noisy].min() > dist[~noisy].max()  # every noise image is harder than every clean one
    assert summary["method"] == "class-distance" and summary["median"] == pytest.approx(np.median(dist))


def test_distance_matches_a_direct_computation_and_caching_does_not_change_it(easy_hard):
    from streamssl.ingest import load_images

    folder, _ = easy_hard
    cached = score_dataset(folder, "class-distance", "a", progress=False, size=16)
    twice = score_dataset(folder, "class-distance", "b", progress=False, size=16, cache_bytes=0)
    assert cached["sha256"] == twice["sha256"]
    images, labels = load_images(folder, None)
    labels = labels.copy()  # writable for torch.from_numpy
    feats = pixel_features(images).double()
    means = torch.stack([feats[torch.from_numpy(labels == c)].mean(0) for c in range(3)])
    expected = (feats - means[torch.from_numpy(labels)]).norm(dim=1).numpy()
    got = pd.read_parquet(folder / "manifest.parquet")["a"].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_one_class_is_an_error(tmp_path):
    from streamssl.errors import ConfigError
    from streamssl.ingest.arrays import ArraySplit, prepare_array_split
    from streamssl.ingest.prepare_options import PrepareOptions

    split = ArraySplit(np.zeros((5, 8, 8, 3), np.uint8), {"label": np.zeros(5, np.int64)}, {"label": ["only"]},
                       [str(i) for i in range(5)])
    prepare_array_split(split, tmp_path, PrepareOptions(source="synthetic", progress=False), "one")
    with pytest.raises(ConfigError, match="one class"):
        score_dataset(tmp_path, "class-distance", progress=False)


def test_ensure_scored_scores_a_missing_default_column_once(easy_hard):
    from streamssl.scoring import ensure_scored

    folder, _ = easy_hard
    assert ensure_scored(folder, None) is None and ensure_scored(folder, "label") is None
    assert ensure_scored(folder, "nope") is None  # left to the stream builder to report
    digest = ensure_scored(folder, "-difficulty_class_distance", progress=False)
    manifest = folder / "manifest.parquet"
    assert "difficulty_class_distance" in pd.read_parquet(manifest).columns
    stamp = manifest.stat().st_mtime_ns
    assert ensure_scored(folder, "difficulty_class_distance") == digest and manifest.stat().st_mtime_ns == stamp


def test_summary_names_classes_by_median_score():
    from streamssl.scoring import _stats

    labels = np.array([0, 0, 0, 2, 2, 2])
    values = np.array([0.1, 0.2, 9.0, 0.5, 0.6, 0.7], np.float32)  # class 0: one outlier, low median
    summary = _stats(values, labels, ["a", "b", "c"])
    assert summary["easiest_class"] == {"label": 0, "name": "a", "median": pytest.approx(0.2)}
    assert summary["hardest_class"] == {"label": 2, "name": "c", "median": pytest.approx(0.6)}
