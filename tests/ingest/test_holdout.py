"""Test splits: a source's own is recorded, and a source without one gets a deterministic,
class-stratified held-out split that no stream contains."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from streamssl.cli import main
from streamssl.errors import ConfigError
from streamssl.ingest import load_dataset_info, prepare, read_manifest, read_samples
from streamssl.ingest.holdout import origin_of_test, parse_test_fraction, stratified_holdout


def test_stratified_holdout_takes_a_rounded_share_of_every_class():
    labels = np.repeat([0, 1, 2, 3, 4], [6, 12, 2, 3, 1])
    held = stratified_holdout(labels, 1 / 6, seed=0)
    # per class floor(n/6 + 0.5): 6 -> 1, 12 -> 2, 2 -> 0, 3 -> 1 (a half rounds up), 1 -> 0
    assert np.bincount(labels[held], minlength=5).tolist() == [1, 2, 0, 1, 0]
    assert np.array_equal(held, stratified_holdout(labels, 1 / 6, seed=0))  # deterministic
    many = np.repeat(np.arange(3), 600)
    a, b = stratified_holdout(many, 0.2, seed=0), stratified_holdout(many, 0.2, seed=1)
    assert np.bincount(many[a]).tolist() == [120] * 3 and not np.array_equal(a, b)


def test_test_fraction_parses_ratios_and_rejects_the_rest():
    assert parse_test_fraction("1/6") == pytest.approx(1 / 6) and parse_test_fraction(0.25) == 0.25
    for bad in ("0", "1", "7/6", "x", "1/0"):
        with pytest.raises(ConfigError, match="--test-fraction"):
            parse_test_fraction(bad)


def test_imagefolder_without_test_path_holds_out_a_stratified_test_split(tmp_path, make_image_folder):
    folder = make_image_folder(tmp_path / "in", {"ant": 6, "bee": 12, "cow": 3})
    info = prepare("imagefolder", folder, tmp_path / "out", parallel=False)
    train, test = read_manifest(tmp_path / "out"), read_manifest(tmp_path / "out" / "test")
    assert (len(train), len(test)) == (17, 4) and set(train.key).isdisjoint(test.key)
    assert test.label.value_counts().sort_index().tolist() == [1, 2, 1]
    assert info["num_samples"] == 17 and info["class_counts"] == [5, 10, 2] and info["test"] == "test"
    assert info["test_split"] == {"kind": "held-out", "fraction": 1 / 6, "fraction_text": "1/6", "seed": 0,
                                  "stratified_by": "label", "num_train": 17, "num_test": 4}
    test_info = load_dataset_info(tmp_path / "out" / "test")
    assert test_info["shard_root"] == ".." and test_info["split"] == "test" and test_info["num_samples"] == 4
    assert train["index"].tolist() == list(range(17))
    # the held-out samples stay in the train split's shards; the test manifest reads them there,
    # and still does after the dataset folder moves
    shutil.move(tmp_path / "out", tmp_path / "moved")
    for sample, (_, row) in zip(read_samples(tmp_path / "moved" / "test", test), test.iterrows()):
        label, rel = json.loads(sample["json"])["id"].split("/")
        assert sample["png"] == (folder / label / rel).read_bytes() and label == row.label_name
    assert origin_of_test(tmp_path / "moved") == "held-out-1/6"


def test_wds_held_out_split_reads_the_input_shards(tmp_path, jpeg_bytes, make_shards, make_sample):
    folder = make_shards(tmp_path / "in", [m for i in range(12) for m in make_sample(f"k{i:02d}", i % 2, jpeg_bytes)])
    info = prepare("wds", folder, tmp_path / "out", parallel=False, test_fraction="1/4")
    test = read_manifest(tmp_path / "out" / "test")
    assert load_dataset_info(tmp_path / "out" / "test")["shard_root"] == str(folder.resolve())
    # 6 per class: round(1.5) = 2 each (halves round up)
    assert sorted(test.label) == [0, 0, 1, 1] and info["test_split"]["fraction_text"] == "1/4"
    assert [s["jpg"] for s in read_samples(tmp_path / "out" / "test", test)] == [jpeg_bytes] * 4
    assert origin_of_test(tmp_path / "out") == "held-out-1/4"


def test_source_test_splits_are_recorded_and_tiny_classes_hold_nothing_out(tmp_path, wds_dir):
    info = prepare("synthetic", None, tmp_path / "syn", classes=2, samples_per_class=10, size=8)
    assert info["test_split"] == {"kind": "source", "num_train": 20, "num_test": 4}
    assert origin_of_test(tmp_path / "syn") == "source-split"
    info = prepare("wds", wds_dir, tmp_path / "wds", parallel=False)  # one sample per class
    assert info["test_split"]["kind"] == "none" and not (tmp_path / "wds" / "test").exists()
    assert info["test_split"]["reason"] == "no class has enough samples to hold out 1/6 of them"
    assert origin_of_test(tmp_path / "wds") == "train-split"


@pytest.mark.parametrize("args, message", [
    (["synthetic", "--test-fraction", "0.2"], "--test-fraction: synthetic brings its own test split"),
    (["imagefolder", "{in}", "--test-path", "{in}", "--test-fraction", "0.2"], "--test-fraction: --test-path"),
    (["imagefolder", "{in}", "--test-fraction", "1.5"], "--test-fraction: must be strictly between 0 and 1"),
])
def test_bad_test_fraction_is_one_line(tmp_path, capsys, make_image_folder, args, message):
    folder = make_image_folder(tmp_path / "in", {"ant": 3})
    argv = ["prepare", *[a.replace("{in}", str(folder)) for a in args], "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_cli_prints_the_held_out_split(tmp_path, capsys, make_image_folder):
    folder = make_image_folder(tmp_path / "in", {"ant": 6, "bee": 6})
    assert main(["prepare", "imagefolder", str(folder), "--out", str(tmp_path / "out"), "--test-fraction", "1/3"]) == 0
    assert "8 samples, test 4 (held out 1/3)" in capsys.readouterr().out


@pytest.mark.ray
def test_streams_never_contain_held_out_samples(ray_local, tmp_path, make_image_folder):
    from streamssl.streams.build import build_stream

    folder = make_image_folder(tmp_path / "in", {"ant": 6, "bee": 6, "cow": 6})
    prepare("imagefolder", folder, tmp_path / "out", parallel=False)
    test_keys = set(read_manifest(tmp_path / "out" / "test").key)
    build_stream(str(tmp_path / "out"), str(tmp_path / "stream"), kind="seq", progress=False)
    streamed = set(pq.read_table(tmp_path / "stream" / "index.parquet")["key"].to_pylist())
    assert len(test_keys) == 3 and streamed == set(read_manifest(tmp_path / "out").key)
    assert streamed.isdisjoint(test_keys)
