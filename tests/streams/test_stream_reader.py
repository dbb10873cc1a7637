"""Materialize + read_stream on Ray Data: exact order, determinism, the rank split, bad samples."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from streamdata import sample_image, write_prepared

from streamssl.cli import main
from streamssl.errors import DataError
from streamssl.streams import plan_stream, rank_num_samples, read_stream, stream_info
from streamssl.streams.build import build_stream

pytestmark = pytest.mark.ray

LABELS = np.tile(np.arange(4), 6)  # 24 samples, 4 classes, interleaved in the source


@pytest.fixture(scope="module")
def stream_dir(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    data = write_prepared(root / "data", LABELS, shard_size=10)
    out = root / "seq-bl"
    build_stream(str(data), str(out), kind="seq-bl", seed=3, shard_size=7, progress=False)
    return out


def rows(ds):
    batches = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_round_trip_in_exact_stream_order(stream_dir):
    plan = plan_stream(LABELS, "seq-bl", seed=3)
    got = rows(read_stream(str(stream_dir)))
    assert got["pos"].tolist() == list(range(24))
    assert got["key"].tolist() == [f"s{i:05d}" for i in plan]
    assert np.array_equal(got["label"], LABELS[plan])
    assert got["image"].shape == (24, 8, 8, 3) and got["image"].dtype == np.uint8
    assert np.array_equal(got["image"][:, 0, 0], np.stack([[i % 256, i // 256, LABELS[i]] for i in plan]))
    info = stream_info(str(stream_dir))
    assert info["num_samples"] == 24 and info["class_order"] == [0, 1, 2, 3] and info["skipped"] == []
    shards = sorted(p.name for p in stream_dir.glob("stream-*.tar"))
    assert shards == [f"stream-{i:06d}.tar" for i in range(4)]  # 24 samples, 7 per shard


def test_two_reads_are_identical_and_resize(stream_dir):
    a, b = rows(read_stream(str(stream_dir))), rows(read_stream(str(stream_dir), chunk_bytes=1000))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert rows(read_stream(str(stream_dir), size=(4, 6)))["image"].shape == (24, 4, 6, 3)


def test_rank_split_two_workers(stream_dir, caplog):
    ranks = [rows(read_stream(str(stream_dir), rank=r, world_size=2, block=5, chunk_bytes=2000))
             for r in range(2)]
    # 24 rows = 4 full blocks of 5 (2 per rank) + 4 rows reported as the remainder
    assert ranks[0]["pos"].tolist() == [*range(0, 5), *range(10, 15)]
    assert ranks[1]["pos"].tolist() == [*range(5, 10), *range(15, 20)]
    union = np.sort(np.concatenate([r["key"] for r in ranks]))
    full = rows(read_stream(str(stream_dir)))
    assert np.array_equal(union, np.sort(full["key"][:20]))
    assert rank_num_samples(str(stream_dir), 1, 2, 5) == 10
    assert "the last 4 of the stream's 24 samples are not used" in caplog.text  # plain words: how many, why
    assert "must all train on the same number of batches" in caplog.text


def test_gray_images_replicated_and_bad_samples_skipped(ray_local, tmp_path, capsys):
    data = write_prepared(tmp_path / "gray", np.repeat(np.arange(2), 4), gray=True)
    manifest = pq.read_table(data / "manifest.parquet").to_pandas()
    manifest.loc[2, "offset"] += 512  # points into the middle of a sample: a bad sample
    manifest.to_parquet(data / "manifest.parquet", index=False)
    code = main(["stream", str(data), "--kind", "seq", "--out", str(tmp_path / "s")])
    assert code == 0
    info = json.loads((tmp_path / "s" / "stream.json").read_text())
    assert [(s["key"], s["shard"]) for s in info["skipped"]] == [("s00002", "shard-000000.tar")]
    assert info["num_samples"] == 7 and "s00002" in capsys.readouterr().err
    got = rows(read_stream(str(tmp_path / "s")))
    assert 2 not in {int(k[1:]) for k in got["key"]}
    first = int(got["key"][0][1:])
    assert np.array_equal(got["image"][0][..., 1], sample_image(first, 0, 8, True))
    with pytest.raises(DataError, match="shard-000000.tar"):
        build_stream(str(data), str(tmp_path / "s2"), kind="seq", strict=True, progress=False)


def test_summary_and_plot(stream_dir, tmp_path):
    from streamssl.streams import plot_stream_classes, summarize_stream

    text = summarize_stream(str(stream_dir))
    assert text.startswith("seq-bl stream") and "24 samples, 4 classes" in text
    assert "4 segments: c0 6, c1 6, c2 6, c3 6" in text
    out = plot_stream_classes([str(stream_dir), str(stream_dir)], str(tmp_path / "streams.png"))
    assert (tmp_path / "streams.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.endswith(".png")
