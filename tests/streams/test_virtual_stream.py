"""Virtual streams: only the plan is written, and reads give the materialized stream's rows exactly."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from streamdata import write_prepared

from streamssl.cli import main
from streamssl.streams import read_stream, stream_info
from streamssl.streams.build import build_stream
from streamssl.streams.split import rank_split, task_groups
from streamssl.streams.virtual import coalesce, virtual_chunks

pytestmark = pytest.mark.ray

LABELS = np.tile(np.arange(4), 6)  # 24 samples, 4 classes, interleaved over 3 source shards


@pytest.fixture(scope="module")
def dataset(ray_local, tmp_path_factory):
    return write_prepared(tmp_path_factory.mktemp("virtual") / "data", LABELS, shard_size=10)


def rows(ds):
    batches = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


@pytest.mark.parametrize("kind", ["seq", "seq-bl", "iid"])
def test_virtual_rows_equal_materialized(dataset, tmp_path, kind, monkeypatch):
    real, virtual = tmp_path / "real", tmp_path / "virtual"
    monkeypatch.setattr("streamssl.streams.build.INDEX_ROW_GROUP", 5)  # tasks read across row groups
    build_stream(str(dataset), str(real), kind=kind, seed=5, shard_size=7, progress=False)
    build_stream(str(dataset), str(virtual), kind=kind, seed=5, progress=False, virtual=True)
    assert sorted(p.name for p in virtual.iterdir()) == ["index.parquet", "stream.json"]
    assert stream_info(str(virtual))["virtual"] is True
    for world in (1, 2):
        for rank in range(world):
            split = {"rank": rank, "world_size": world, "block": 5}
            a = rows(read_stream(str(real), **split))
            b = rows(read_stream(str(virtual), chunk_bytes=1500, **split))  # several tasks, several ranges
            assert a.keys() == b.keys() and len(a["pos"]) == (24 if world == 1 else 10)
            for column in a:
                assert np.array_equal(a[column], b[column]), (kind, world, rank, column)
            assert not any(b["skip"])


def test_cli_virtual_and_a_bad_sample_is_a_skip_row(dataset, tmp_path, capsys):
    index_path = tmp_path / "s" / "index.parquet"
    assert main(["stream", str(dataset), "--kind", "seq", "--out", str(tmp_path / "s"), "--virtual"]) == 0
    assert "virtual: no image copied" in capsys.readouterr().out
    index = pq.read_table(index_path).to_pandas()
    assert index["shard"].str.startswith(str(dataset)).all() and json.loads(
        (tmp_path / "s" / "stream.json").read_text())["num_samples"] == 24
    index.loc[3, "offset"] += 512  # points into the middle of a sample
    index.to_parquet(index_path, index=False)
    got = rows(read_stream(str(tmp_path / "s")))
    assert got["pos"].tolist() == list(range(24)) and got["key"][3] == index.loc[3, "key"]
    assert "manifest out of date" in got["skip"][3] or "truncated" in got["skip"][3]
    assert not got["image"][3].any() and [bool(r) for r in got["skip"]].count(True) == 1


@pytest.mark.parametrize("world", [1, 2])
def test_grouped_read_tasks_yield_the_chunks_blocks(dataset, tmp_path, world, monkeypatch):
    stream = tmp_path / "virtual"
    monkeypatch.setattr("streamssl.streams.build.INDEX_ROW_GROUP", 5)  # a group spans row groups
    build_stream(str(dataset), str(stream), kind="seq-bl", seed=5, progress=False, virtual=True)
    for rank in range(world):
        split = rank_split(24, rank, world, 3)
        single = virtual_chunks(str(stream), split, 600, max_tasks=100)
        grouped = virtual_chunks(str(stream), split, 600, max_tasks=len(single) // 2)  # 1+2+3+2 chunks; 2+2
        assert len(single) >= 4 and len(grouped) <= len(single) // 2 and any(t.cuts for t in grouped)
        assert sum(t.num_rows for t in grouped) == split.num_samples
        want = [b for task in single for b in task.blocks(None)]
        got = [b for task in grouped for b in task.blocks(None)]
        assert [len(b["pos"]) for b in got] == [len(b["pos"]) for b in want]
        assert all(len(b["pos"]) % 3 == 0 for b in got)
        for a, b in zip(want, got):
            for column in a:
                assert np.array_equal(a[column], b[column]), (world, rank, column)
        assert np.concatenate([b["pos"] for b in got]).tolist() == split.rows().tolist()


def test_read_tasks_are_sized_by_the_streams_mean_sample_size(dataset, tmp_path):
    stream = tmp_path / "virtual"
    build_stream(str(dataset), str(stream), kind="seq", seed=5, progress=False, virtual=True)
    nbytes = pq.read_table(stream / "index.parquet")["nbytes"].to_numpy()
    assert stream_info(str(stream))["source_bytes"] == nbytes.sum()
    split = rank_split(24, 1, 2, 2)
    recorded = virtual_chunks(str(stream), split, 3 * int(nbytes.mean()), 100, stream_info(str(stream)))
    assert recorded == virtual_chunks(str(stream), split, 3 * int(nbytes.mean()), 100)  # from the index
    assert [t.num_rows for t in recorded] == [4, 4, 4] and [t.lo for t in recorded] == [2, 10, 18]
    assert recorded[-1].hi == 24 and sum(t.num_bytes for t in recorded) == pytest.approx(12 * nbytes.mean(), abs=3)


def test_read_stream_groups_chunks_beyond_the_task_cap(dataset, tmp_path, monkeypatch):
    real, virtual = tmp_path / "real", tmp_path / "virtual"
    build_stream(str(dataset), str(real), kind="seq", seed=5, shard_size=7, progress=False)
    build_stream(str(dataset), str(virtual), kind="seq", seed=5, progress=False, virtual=True)
    want = {k: rows(read_stream(str(s), block=2, chunk_bytes=600)) for k, s in (("r", real), ("v", virtual))}
    monkeypatch.setattr("streamssl.streams.reader.MAX_READ_TASKS", 3)
    for name, stream in (("r", real), ("v", virtual)):
        got = rows(read_stream(str(stream), block=2, chunk_bytes=600))
        for column in got:
            assert np.array_equal(got[column], want[name][column]), (name, column)


def test_the_task_cap_follows_the_clusters_cpus(ray_local, monkeypatch):
    from streamssl.streams import reader

    cpus = int(ray_local.cluster_resources()["CPU"])
    assert reader.max_read_tasks() == min(1000, 16 * max(cpus, 4))
    monkeypatch.setattr(reader, "READ_TASKS_PER_CPU", 1000)
    assert reader.max_read_tasks() == 1000  # a large cluster: at most MAX_READ_TASKS


def test_task_groups_ramp_up_and_respect_the_cap():
    assert task_groups(5, 10).tolist() == list(range(6))  # under the cap: one chunk per task
    sizes = np.diff(task_groups(115_940, 1000))
    assert sizes.sum() == 115_940 and len(sizes) <= 1000
    assert sizes[:8].tolist() == [1, 2, 4, 8, 16, 32, 64, sizes.max()]
    for n, cap in ((10, 3), (20, 2), (7, 1), (100, 10), (1001, 1000)):
        sizes = np.diff(task_groups(n, cap))
        assert sizes.sum() == n and len(sizes) <= cap and sizes.min() >= 1, (n, cap)


def test_coalesce_merges_neighbours_in_shard_order():
    shard = np.array([1, 0, 0, 1, 0])
    offset = np.array([0, 5000, 0, 1_000_000, 1000])
    nbytes = np.array([100, 100, 1000, 100, 1000])
    ranges, which = coalesce(shard, offset, nbytes, max_gap=4096)
    assert ranges == [[0, 0, 5100], [1, 0, 100], [1, 1_000_000, 1_000_100]]
    assert which.tolist() == [1, 0, 0, 2, 0]


def test_pipeline_key_runs_on_a_virtual_stream(data_root, tmp_path):
    from streamssl import resolve
    from streamssl.errors import ConfigError

    with pytest.raises(ConfigError, match="stream.virtual"):
        resolve.load("pipelines/smoke.yaml", ["stream.virtual=3"])
    overrides = ["stream.virtual=true", "method.crops=2", "learner.threads=1", "eval.linear=off",
                 "eval.points=[1.0]"]
    assert main(["run", "pipelines/smoke.yaml", *overrides, "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert stream_info(info["stream_dir"])["virtual"] is True and info["samples_seen"] == 128
    assert info["torch_threads"] == 1  # learner.threads, recorded: results repeat only at the same count
    assert sorted(p.name for p in Path(info["stream_dir"]).iterdir()) == ["index.parquet", "stream.json"]
