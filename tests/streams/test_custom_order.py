"""`custom` streams ordered by a manifest column: ascending, `-COLUMN` descending, scored columns."""

import json

import numpy as np
import pandas as pd
import pytest

from streamssl.cli import main
from streamssl.errors import ConfigError
from streamssl.streams.plan import descending_key, parse_order_by, plan_stream


def test_parse_order_by_and_descending_key():
    assert parse_order_by("difficulty_loss") == ("difficulty_loss", False)
    assert parse_order_by("-difficulty_loss") == ("difficulty_loss", True)
    with pytest.raises(ConfigError, match="^order_by: "):
        parse_order_by("-")
    small = np.array([0, 200, 255], np.uint8)  # negating uint8 in place would wrap around
    assert np.argsort(descending_key(small)).tolist() == [2, 1, 0]
    assert descending_key(np.array([0.5, -1.0])).tolist() == [-0.5, 1.0]


def test_descending_plan_reverses_the_order_and_ignores_dropped_classes():
    labels = np.tile(np.arange(3), 10)
    score = np.random.default_rng(0).random(30)
    plan = plan_stream(labels, "custom", order_by=descending_key(score))
    assert np.all(np.diff(score[plan]) <= 0) and len(plan) == 30
    score[labels == 2] = np.nan  # a class the stream leaves out may lack scores
    subset = plan_stream(labels, "custom", order_by=score, class_order=[1, 0])
    assert set(labels[subset]) == {0, 1} and np.all(np.diff(score[subset]) >= 0)
    with pytest.raises(ConfigError, match="missing"):
        plan_stream(labels, "custom", order_by=score)


def _stream_column(stream_dir, dataset_dir, column):
    index = pd.read_parquet(stream_dir / "index.parquet")
    manifest = pd.read_parquet(dataset_dir / "manifest.parquet").set_index("key")
    return manifest.loc[index["key"], column].to_numpy()


def test_streams_sorted_by_a_scored_column_and_old_streams_unchanged(ray_local, tiny_dataset, tmp_path):
    from streamssl.scoring import score_dataset
    from streamssl.streams.build import build_stream

    before = build_stream(str(tiny_dataset), str(tmp_path / "seq0"), kind="seq", seed=1, progress=False)
    score_dataset(tiny_dataset, "class-distance", progress=False)
    after = build_stream(str(tiny_dataset), str(tmp_path / "seq1"), kind="seq", seed=1, progress=False)
    assert after["plan_sha256"] == before["plan_sha256"]  # rows and their order kept by scoring
    for spec, sign in (("difficulty_class_distance", 1), ("-difficulty_class_distance", -1)):
        out = tmp_path / spec
        summary = build_stream(str(tiny_dataset), str(out), kind="custom", order_by=spec, progress=False)
        values = _stream_column(out, tiny_dataset, "difficulty_class_distance")
        assert summary["num_samples"] == 24 and np.all(sign * np.diff(values) >= 0)


def test_cli_descending_order_and_unknown_column(ray_local, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "hard-first"
    assert main(["stream", str(tiny_dataset), "--kind", "custom", "--order-by=-difficulty", "--out", str(out),
                 "--shard-size", "10"]) == 0
    assert np.all(np.diff(_stream_column(out, tiny_dataset, "difficulty")) <= 0)
    assert json.loads((out / "stream.json").read_text())["args"]["order_by"] == "-difficulty"
    capsys.readouterr()
    assert main(["stream", str(tiny_dataset), "--kind", "custom", "--order-by=-difficulty_loss",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "difficulty_loss" in err and "streamssl score" in err
