"""Identity of data: caches keyed by content, never a stale dataset or stream, runs naming their data."""

import json

import numpy as np
import pytest
from PIL import Image

from streamssl import resolve
from streamssl.cli import main
from streamssl.ingest import load_dataset_info, prepare
from streamssl.ingest.dataset import dataset_identity
from streamssl.pipeline import ensure_dataset, ensure_stream
from streamssl.streams import stream_info

pytestmark = pytest.mark.ray


def add_images(folder, cls, start, count):
    (folder / cls).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / cls / f"{i}.png")


def synthetic(out, per_class, seed=0):
    prepare("synthetic", None, out, classes=4, samples_per_class=per_class, size=16, seed=seed, progress=False)


def test_images_added_to_a_folder_give_a_new_dataset_and_stream(data_root, tmp_path):
    folder = tmp_path / "images"
    for cls in ("a", "b"):
        add_images(folder, cls, 0, 6)
    config = resolve.load("pipelines/smoke.yaml", ["dataset.source=imagefolder", f"dataset.path={folder}",
                                               "dataset.options={}"])
    first = ensure_dataset(config)
    assert ensure_dataset(config) == first  # unchanged files: the cache is used
    # prepare holds out 1/6 of each class as the test split: 6 + 6 images train on 5 + 5
    assert stream_info(ensure_stream(config, first))["num_samples"] == 10
    add_images(folder, "a", 6, 4)
    second = ensure_dataset(config)  # 10 + 6 images: 2 + 1 held out, 8 + 5 train
    assert second != first and load_dataset_info(second)["num_samples"] == 13
    assert stream_info(ensure_stream(config, second))["num_samples"] == 13


def test_preparing_again_into_the_same_folder_rebuilds_the_stream_and_the_run_uses_it(data_root, tmp_path):
    data = tmp_path / "mydata"
    synthetic(data, 8)
    overrides = [f"dataset.dir={data}", "method.crops=2", "learner.threads=1", "eval.linear_epochs=2",
                 "eval.val_samples=0"]  # 32 samples: the kNN memory takes them all
    config = resolve.load("pipelines/smoke.yaml", overrides)
    old_stream = ensure_stream(config, data)
    assert stream_info(old_stream)["num_samples"] == 32
    synthetic(data, 10, seed=1)  # different data in the same folder
    run_dir = tmp_path / "run"
    assert main(["run", "pipelines/smoke.yaml", *overrides, "--out", str(run_dir), "--no-progress"]) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["stream_dir"] != str(old_stream) and info["samples_seen"] == 40  # trained on the new data
    assert info["dataset_id"] == {"name": "mydata", "sha256": dataset_identity(data)["sha256"]}
    assert "`mydata`" in (run_dir / "report.md").read_text()  # the report names the data, not its source


def test_the_content_hash_follows_the_data_not_the_folder(tmp_path):
    synthetic(tmp_path / "a", 6)
    synthetic(tmp_path / "b", 6)
    synthetic(tmp_path / "c", 6, seed=1)
    recorded = {name: load_dataset_info(tmp_path / name)["content_sha256"] for name in "abc"}
    assert recorded["a"] == recorded["b"] != recorded["c"]  # prepared twice: byte-identical, same hash
    ids = {name: dataset_identity(tmp_path / name) for name in "abc"}
    assert ids["a"]["sha256"] == ids["b"]["sha256"] and ids["a"]["name"] == "a"
    info = json.loads((tmp_path / "a" / "dataset.json").read_text())
    del info["content_sha256"]  # a dataset prepared before the hash was recorded
    (tmp_path / "a" / "dataset.json").write_text(json.dumps(info))
    assert dataset_identity(tmp_path / "a") == ids["a"]
