"""Every source end to end on tiny inputs: shards, manifest, dataset.json, test split."""

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from streamssl.ingest import load_dataset_info, prepare, read_manifest, read_samples
from streamssl.ingest.fashion_mnist import DEFAULT_PATH, load_split
from streamssl.ingest.synthetic import make_split

MANIFEST_COLUMNS = [
    "key",
    "index",
    "shard",
    "offset",
    "nbytes",
    "size",
    "ext",
    "label",
    "label_name",
    "width",
    "height",
]


def _decoded(out, rows):
    return [np.asarray(Image.open(io.BytesIO(s[e]))) for s, e in zip(read_samples(out, rows), rows.ext)]


def test_fashion_mnist_idx(idx_dir, tmp_path):
    info = prepare("fashion-mnist", idx_dir, tmp_path / "out", shard_size=5)
    m = read_manifest(tmp_path / "out")
    assert list(m.columns) == MANIFEST_COLUMNS
    assert m.label.tolist() == [i % 10 for i in range(12)]  # source order, never grouped by class
    assert m.index.tolist() == list(range(12)) and m.shard.nunique() == 3 == info["num_shards"]
    assert info["class_names"][9] == "Ankle boot" and info["class_counts"] == [2, 2] + [1] * 8
    assert (m.width == 28).all() and (m.height == 28).all() and (m.ext == "png").all()
    sample = read_samples(tmp_path / "out", m.iloc[[7]])[0]
    assert Image.open(io.BytesIO(sample["png"])).mode == "L"
    assert sample["cls"] == b"7" and json.loads(sample["json"])["id"] == "train/7"
    assert load_dataset_info(tmp_path / "out" / "test")["num_samples"] == 5
    assert info["test"] == "test" and len(info["mean"]) == 3 and info["mean"][0] == info["mean"][2]


def test_cifar10_pickles(cifar10_dir, tmp_path):
    info = prepare("cifar10", cifar10_dir.parent, tmp_path / "out")  # the parent folder works too
    m = read_manifest(tmp_path / "out")
    assert len(m) == 10 and m.label.tolist() == list(range(10)) and info["class_names"][3] == "c3"
    with open(cifar10_dir / "data_batch_2", "rb") as f:
        raw = __import__("pickle").load(f, encoding="bytes")[b"data"][1]
    np.testing.assert_array_equal(
        _decoded(tmp_path / "out", m.iloc[[3]])[0], raw.reshape(3, 32, 32).transpose(1, 2, 0)
    )
    test = read_manifest(tmp_path / "out" / "test")
    assert len(test) == 3 and test.key.str.contains(".", regex=False).sum() == 0


def test_cifar100_keeps_coarse_labels(cifar100_dir, tmp_path):
    info = prepare("cifar100", cifar100_dir, tmp_path / "out")
    m = read_manifest(tmp_path / "out")
    assert m.label.tolist() == [0, 99, 5, 42, 7, 64]
    assert m.coarse_label.tolist() == [0, 19, 1, 8, 1, 12]
    assert m.coarse_label_name.tolist()[1] == "coarse19" and m.label_name.tolist()[1] == "fine99"
    coarse = info["label_columns"]["coarse_label"]
    assert coarse["num_classes"] == 20 and coarse["class_counts"][1] == 2 and info["num_classes"] == 100
    assert list(m.columns).index("coarse_label_name") == list(m.columns).index("coarse_label") + 1


def test_imagefolder_formats_labels_and_test_path(image_folder, tmp_path):
    info = prepare("imagefolder", image_folder, tmp_path / "out", test_path=image_folder)
    m = read_manifest(tmp_path / "out")
    assert info["class_names"] == ["cat", "dog", "emu"] and m.label.tolist() == [0, 0, 1, 1, 2, 2]
    assert m.ext.tolist() == ["png", "jpg", "png", "jpg", "png", "png"]  # real format; BMP re-encoded
    assert (m.width.tolist(), m.height.tolist()) == ([8, 8, 8, 10, 8, 8], [6, 6, 6, 10, 6, 6])
    samples = read_samples(tmp_path / "out", m)
    for rel, sample, ext in zip(
        ["cat/a_gray.png", "cat/b_rgb.jpg", "dog/c_rgba.png", "dog/d_really_jpeg.png"], samples, m.ext
    ):
        assert sample[ext] == (image_folder / rel).read_bytes()  # original bytes, untouched
        assert json.loads(sample["json"])["id"] == rel
    assert Image.open(io.BytesIO(samples[2]["png"])).mode == "RGBA"
    assert info["image_ext"] == "mixed" and info["test"] == "test" and info["skipped"] == []
    assert read_manifest(tmp_path / "out" / "test").label.tolist() == m.label.tolist()


def test_imagefolder_test_path_with_unknown_class(image_folder, tmp_path):
    (image_folder / "yak").mkdir()
    (image_folder / "yak" / "x.png").write_bytes((image_folder / "emu" / "f.png").read_bytes())
    train = tmp_path / "train"
    (train / "cat").mkdir(parents=True)
    (train / "cat" / "a.png").write_bytes((image_folder / "cat" / "a_gray.png").read_bytes())
    with pytest.raises(Exception, match="--test-path: class folder 'dog'"):
        prepare("imagefolder", train, tmp_path / "out", test_path=image_folder)


def test_wds_indexes_in_place(wds_dir, tmp_path, jpeg_bytes):
    before = {p.name: p.read_bytes() for p in wds_dir.iterdir()}
    info = prepare("wds", wds_dir, tmp_path / "out", parallel=False)
    m = read_manifest(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dataset.json", "manifest.parquet"]
    assert {p.name: p.read_bytes() for p in wds_dir.iterdir()} == before  # nothing rewritten or added
    assert info["shard_root"] == str(wds_dir.resolve()) and info["skipped"] == []  # _info.json ignored
    assert m.shard.tolist() == ["imagenet22k-train-0000.tar"] * 3 + ["imagenet22k-train-0001.tar"] * 3
    assert m.key.tolist()[3] == "n00001_0" and m.label.tolist() == list(range(6))
    assert (m.width == 16).all() and (m.height == 12).all() and (m.ext == "jpg").all()
    sample = read_samples(tmp_path / "out", m.iloc[[4]])[0]
    assert sample["jpg"] == jpeg_bytes and sample["cls"] == b"4" and sample["__key__"] == "n00001_1"
    assert info["num_classes"] == 6 and info["class_names"][5] == "5" and len(info["mean"]) == 3


def test_wds_no_verify_skips_image_headers(wds_dir, tmp_path):
    info = prepare("wds", wds_dir, tmp_path / "out", verify=False, parallel=False)
    m = read_manifest(tmp_path / "out")
    assert len(m) == 6 and (m.width == -1).all() and info["mean"] is None


def test_synthetic_deterministic_interleaved_with_test_split(tmp_path):
    a = prepare(
        "synthetic", None, tmp_path / "a", classes=4, samples_per_class=10, size=16, seed=3, shard_size=16
    )
    prepare(
        "synthetic", None, tmp_path / "b", classes=4, samples_per_class=10, size=16, seed=3, shard_size=16
    )
    for name in (
        "shard-000000.tar",
        "shard-000002.tar",
        "manifest.parquet",
        "dataset.json",
        "test/shard-000000.tar",
    ):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    labels = read_manifest(tmp_path / "a").label.to_numpy()
    assert a["class_counts"] == [10] * 4 and a["num_shards"] == 3
    assert (np.diff(labels) != 0).sum() > 10  # interleaved, not grouped by class
    assert load_dataset_info(tmp_path / "a" / "test")["class_counts"] == [2] * 4
    other = make_split(4, 10, 16, seed=4, stream=0).labels["label"]
    assert not np.array_equal(other, labels)


def test_rerun_replaces_stale_shards(tmp_path):
    prepare("synthetic", None, tmp_path / "out", classes=2, samples_per_class=6, shard_size=2)
    prepare("synthetic", None, tmp_path / "out", classes=2, samples_per_class=6, shard_size=12)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tar")) == ["shard-000000.tar"]


def test_real_debian_fashion_mnist_parses():
    if not DEFAULT_PATH.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    train, test = load_split(DEFAULT_PATH, "train"), load_split(DEFAULT_PATH, "test")
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert np.bincount(train.labels["label"]).tolist() == [6000] * 10
    assert test.labels["label"].min() == 0 and test.labels["label"].max() == 9


def test_tars_are_standard_tars(tmp_path):
    prepare("synthetic", None, tmp_path / "out", classes=2, samples_per_class=2)
    with tarfile.open(tmp_path / "out" / "shard-000000.tar") as tf:
        assert tf.getnames()[:3] == [
            "synthetic_00000000.cls",
            "synthetic_00000000.json",
            "synthetic_00000000.png",
        ]
