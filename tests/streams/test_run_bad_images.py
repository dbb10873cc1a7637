"""`run` on images that do not decode (admitted by `prepare wds --no-verify`): each is skipped,
counted and named in run.json, and the run completes; under --strict, one line naming it."""

import io
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from streamssl.cli import main
from streamssl.errors import DataError
from streamssl.ingest import prepare
from streamssl.streams import read_stream
from streamssl.train.skips import StreamSkips

pytestmark = pytest.mark.ray

SHARD = "imagenet22k-train-0000.tar"


def _png(label: int, seed: int) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 40, (16, 16, 3))
    buf = io.BytesIO()
    Image.fromarray((noise + 60 * label).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _tar(path, samples: list[tuple[str, int, bytes]]) -> None:
    with tarfile.open(path, "w") as tf:
        for key, label, image in samples:
            for ext, data in (("png", image), ("cls", str(label).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def bad_dataset(tmp_path_factory):
    """wds, 4 classes: train 48 samples with one junk image, test 16 with one truncated PNG."""
    root = tmp_path_factory.mktemp("bad")
    (root / "train").mkdir()
    (root / "test").mkdir()
    train = [(f"t{i:02d}", i % 4, _png(i % 4, i)) for i in range(48)]
    train[5] = ("bad", 1, b"this is not an image")
    _tar(root / "train" / SHARD, train[:24])
    _tar(root / "train" / "imagenet22k-train-0001.tar", train[24:])
    test = [(f"e{i:02d}", i % 4, _png(i % 4, 100 + i)) for i in range(16)]
    cut = _png(2, 7)
    test[2] = ("cut", 2, cut[: len(cut) // 2])
    _tar(root / "test" / "test-0000.tar", test)
    prepare("wds", root / "train", root / "ds", verify=False, test_path=root / "test", parallel=False)
    return root / "ds"


# the whole 48-image train split is the kNN memory, as the counts below expect
NO_VAL = ["eval.val_samples=0"]


def test_run_skips_counts_and_names_images_that_do_not_decode(bad_dataset, data_root, tmp_path, caplog):
    run_dir = tmp_path / "run"
    assert main(["run", "pipelines/smoke.yaml", f"dataset.dir={bad_dataset}", *NO_VAL, "--out", str(run_dir),
                 "--no-progress"]) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["samples_seen"] == 48 and info["updates"] == 3
    where = {r["where"]: r for r in info["skipped"]}
    assert len(info["skipped"]) == 3 and set(where) == {"stream", "memory", "test"}
    assert (where["stream"]["shard"], where["stream"]["key"]) == (SHARD, "bad")
    assert where["stream"]["stream_shard"].startswith("stream-") and where["stream"]["pos"] >= 0
    assert (where["memory"]["shard"], where["memory"]["key"]) == (SHARD, "bad")
    assert (where["test"]["shard"], where["test"]["key"]) == ("test-0000.tar", "cut")
    assert where["stream"]["reason"] == "image does not decode (UnidentifiedImageError: no format PIL reads)"
    assert where["test"]["reason"] == "image does not decode (OSError: image file is truncated)"
    assert info["sample_counts"] == {"stream": {"in": 48, "used": 47, "skipped": 1},
                                     "memory": {"in": 48, "used": 47, "skipped": 1},
                                     "test": {"in": 16, "used": 15, "skipped": 1},
                                     "val": {"in": 0, "used": 0, "skipped": 0}}
    knn = pd.read_parquet(run_dir / "metrics.parquet").query("metric == 'eval/knn_top1'")
    assert knn.samples_seen.tolist() == [0, 32, 48] and knn.protocol.str.contains("memory=47 test=15").all()
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert f"stream: {SHARD} bad: image does not decode" in warnings and "test: test-0000.tar cut" in warnings

    # the same stream read under --strict stops at the sample, naming its source shard and key
    batches = read_stream(info["stream_dir"]).iter_batches(batch_size=16, batch_format="numpy")
    with pytest.raises(DataError, match=rf"^{SHARD}, key bad \(stream position \d+\): image does not decode"):
        list(StreamSkips([], info["stream_dir"], bad_dataset, strict=True).filter(batches))


def test_strict_run_stops_with_one_line_naming_shard_and_key(bad_dataset, data_root, tmp_path, capsys):
    assert main(["run", "pipelines/smoke.yaml", f"dataset.dir={bad_dataset}", *NO_VAL, "--out", str(tmp_path / "s"),
                 "--no-progress", "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{SHARD}, key bad" in err and "image does not decode" in err
