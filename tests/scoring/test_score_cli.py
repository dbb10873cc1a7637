"""`streamssl score` on the command line, bad inputs, and a curriculum run end to end."""

import json

import numpy as np
import pandas as pd
import pytest

from streamssl.cli import main


def test_score_writes_the_column_and_prints_a_summary(easy_hard, capsys):
    folder, noisy = easy_hard
    assert main(["score", str(folder), "--by", "class-distance", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "72 samples" in out and "'difficulty_class_distance'" in out and "hardest" in out
    manifest = pd.read_parquet(folder / "manifest.parquet")
    first = manifest["difficulty_class_distance"].to_numpy()
    # re-scoring the same column overwrites it in place (here with another feature size)
    assert main(["score", str(folder), "--by", "class-distance", "--size", "4", "--no-progress"]) == 0
    again = pd.read_parquet(folder / "manifest.parquet")
    assert list(again.columns) == list(manifest.columns) and not np.allclose(again.iloc[:, -1], first)
    record = json.loads((folder / "dataset.json").read_text())["scores"]["difficulty_class_distance"]
    assert record["params"]["size"] == 4 and record["method"] == "class-distance"
    assert not list(folder.glob(".*.tmp*"))  # temporary files renamed away


def test_existing_column_needs_force_and_dataset_columns_are_protected(easy_hard, capsys):
    folder, _ = easy_hard
    manifest = pd.read_parquet(folder / "manifest.parquet")
    manifest.assign(mine=1.0).to_parquet(folder / "manifest.parquet", index=False)
    args = ["score", str(folder), "--by", "class-distance", "--no-progress"]
    assert main([*args, "--column", "mine"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--column", "mine", "--force"]) == 0
    assert pd.read_parquet(folder / "manifest.parquet")["mine"].between(0, 2).all()
    for column in ("label", "offset", "label_name", "-x"):
        assert main([*args, f"--column={column}", "--force"]) == 2
        assert "--column" in capsys.readouterr().err


@pytest.mark.parametrize("case, extra, word", [
    ("missing", ["--by", "loss"], "DATASET_DIR"),
    ("empty", ["--by", "loss"], "not a prepared dataset"),
    ("ok", ["--by", "entropy"], "--by"),
    ("ok", ["--by", "loss", "--size", "8"], "--size"),
    ("ok", ["--by", "class-distance", "--epochs", "2"], "--epochs"),
    ("ok", ["--by", "loss", "--folds", "1"], "folds"),
    ("ok", ["--by", "loss", "--label-column", "coarse"], "--label-column"),
    ("one-class", ["--by", "class-distance"], "one class"),
])
def test_bad_input_is_one_line_exit_2(easy_hard, tmp_path, capsys, case, extra, word):
    from streamssl.ingest.arrays import ArraySplit, prepare_array_split
    from streamssl.ingest.prepare_options import PrepareOptions

    folder = {"missing": tmp_path / "nope", "empty": tmp_path, "ok": easy_hard[0], "one-class": tmp_path / "one"}[case]
    if case == "one-class":
        split = ArraySplit(np.zeros((4, 8, 8, 3), np.uint8), {"label": np.zeros(4, np.int64)}, {"label": ["a"]},
                           list("abcd"))
        prepare_array_split(split, folder, PrepareOptions(source="synthetic", progress=False), "one")
    assert main(["score", str(folder), *extra, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err


@pytest.mark.ray
def test_curriculum_run_end_to_end(ray_local, tmp_path, capsys):
    data = tmp_path / "smoke-data"
    assert main(["prepare", "synthetic", "--classes", "4", "--samples-per-class", "32", "--size", "16",
                 "--out", str(data)]) == 0
    assert main(["score", str(data), "--by", "loss", "--epochs", "1", "--image-size", "16", "--threads", "1",
                 "--no-progress"]) == 0
    run_dir = tmp_path / "run"
    assert main(["run", "pipelines/smoke.yaml", f"dataset.dir={data}", "stream.kind=custom",
                 "stream.order_by=difficulty_loss", "eval.points=[0,1.0]", "eval.linear=off",
                 "--out", str(run_dir), "--no-progress"]) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["samples_seen"] == 128
    stream_dir = next((data / "streams").glob("custom-*"))
    keys = pd.read_parquet(stream_dir / "index.parquet")["key"]
    scores = pd.read_parquet(data / "manifest.parquet").set_index("key").loc[keys, "difficulty_loss"]
    assert np.all(np.diff(scores.to_numpy()) >= 0)  # the run trained easy to hard
    capsys.readouterr()
    assert main(["run", "pipelines/smoke.yaml", f"dataset.dir={data}", "stream.kind=custom",
                 "stream.order_by=difficulty_nope", "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "stream.order_by" in capsys.readouterr().err  # a pipeline's error names the key, not the flag


@pytest.mark.ray
def test_run_scores_an_unscored_column_on_first_use(ray_local, tmp_path):
    data = tmp_path / "smoke-data"
    assert main(["prepare", "synthetic", "--classes", "4", "--samples-per-class", "32", "--size", "16",
                 "--out", str(data)]) == 0
    args = ["run", "pipelines/smoke.yaml", f"dataset.dir={data}", "stream.kind=custom",
            "stream.order_by=-difficulty_class_distance", "eval.points=[1.0]", "eval.linear=off", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    scores = json.loads((data / "dataset.json").read_text())["scores"]
    assert scores["difficulty_class_distance"]["method"] == "class-distance"
    stream_dir = next((data / "streams").glob("custom-*"))
    keys = pd.read_parquet(stream_dir / "index.parquet")["key"]
    values = pd.read_parquet(data / "manifest.parquet").set_index("key").loc[keys, "difficulty_class_distance"]
    assert np.all(np.diff(values.to_numpy()) <= 0)  # "-column": hard to easy
    # re-scoring with other settings changes the checksum, so the next run builds a fresh stream
    assert main(["score", str(data), "--by", "class-distance", "--size", "4", "--no-progress"]) == 0
    assert main([*args, "--out", str(tmp_path / "run2")]) == 0
    assert len(list((data / "streams").glob("custom-*"))) == 2
