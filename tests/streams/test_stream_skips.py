"""Dropping undecodable rows from stream batches: shorter (even empty) batches, rows counted."""

import json

import numpy as np
import pandas as pd
import pytest

from streamssl.errors import DataError
from streamssl.train.skips import StreamSkips, gather_records, run_skips


@pytest.fixture
def dirs(tmp_path):
    (tmp_path / "stream").mkdir()
    (tmp_path / "stream" / "stream.json").write_text(json.dumps({"num_samples": 8, "shard_size": 3}))
    (tmp_path / "data").mkdir()
    pd.DataFrame({"key": [f"k{i}" for i in range(8)], "shard": ["a.tar"] * 4 + ["b.tar"] * 4}).to_parquet(
        tmp_path / "data" / "manifest.parquet")
    return tmp_path / "stream", tmp_path / "data"


def _batch(start: int, skip: list[str], ragged: bool = False) -> dict:
    n = len(skip)
    images = np.stack([np.full((2, 3, 3), start + i, np.uint8) for i in range(n)])
    if ragged:  # a decoded image of another size made the batch ragged
        images = np.empty(n, dtype=object)
        for i, s in enumerate(skip):
            images[i] = np.full((2, 3, 3), start + i, np.uint8) if not s else np.zeros((1, 1, 3), np.uint8)
    return {"key": np.array([f"k{start + i}" for i in range(n)], dtype=object),
            "pos": np.arange(start, start + n), "label": np.arange(n) % 2, "image": images,
            "skip": np.array(skip, dtype=object)}


def test_bad_rows_leave_their_batch_and_are_recorded(dirs):
    records = []
    batches = [_batch(0, ["", "bad png", "", ""]), _batch(4, ["x", "y", "z", "w"]), _batch(8, ["", "q"], True)]
    out = list(StreamSkips(records, *dirs, strict=False).filter(batches))
    assert [b["rows"] for b in out] == [4, 4, 2]  # the loop counts stream positions, kept or not
    assert out[0]["key"].tolist() == ["k0", "k2", "k3"] and out[0]["image"][:, 0, 0, 0].tolist() == [0, 2, 3]
    assert out[1]["image"].shape == (0, 2, 3, 3) and len(out[1]["label"]) == 0  # all bad: empty, still a batch
    assert out[2]["image"].dtype == np.uint8 and out[2]["image"].shape == (1, 2, 3, 3)  # restacked
    assert [(r["key"], r["pos"], r["shard"], r["where"]) for r in records[:2]] == [
        ("k1", 1, "stream-000000.tar", "stream"), ("k4", 4, "stream-000001.tar", "stream")]
    assert len(records) == 6 and records[0]["reason"] == "bad png"
    summary = run_skips(records, None, 10, dirs[1], rank=0)
    assert summary["sample_counts"] == {"stream": {"in": 10, "used": 4, "skipped": 6}}
    # source shards by key from the manifest; a key it lacks keeps its stream shard
    assert [r["shard"] for r in summary["skipped"]] == ["a.tar", *["b.tar"] * 4, "stream-000003.tar"]
    assert summary["skipped"][0]["stream_shard"] == "stream-000000.tar"
    assert gather_records(records) == records  # one process: nothing to gather


def test_strict_stops_naming_the_source_shard_and_key(dirs):
    skips = StreamSkips([], *dirs, strict=True)
    with pytest.raises(DataError, match=r"^b.tar, key k5 \(stream position 5\): truncated \(dataset.strict\)$"):
        list(skips.filter([_batch(0, ["", "", "", ""]), _batch(4, ["", "truncated", "", ""])]))
