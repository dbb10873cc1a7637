"""fsio against a real S3-compatible server on loopback: URIs, ranged reads, atomic writes."""

import pytest

from streamssl import fsio


def test_s3_settings_come_from_the_aws_variables(s3_bucket, s3_server):
    filesystem, inner = fsio.resolve(f"{s3_bucket}/a/b")
    assert filesystem.type_name == "s3" and inner == f"{s3_bucket[5:]}/a/b"
    assert fsio.storage_env()["AWS_ENDPOINT_URL"] == s3_server
    assert fsio.to_uri(filesystem, inner) == f"{s3_bucket}/a/b"
    assert fsio.join(s3_bucket, "x", "y.json") == f"{s3_bucket}/x/y.json"  # no "s3:/" folding
    assert fsio.absolute(s3_bucket) == s3_bucket and fsio.normpath(f"{s3_bucket}/a/../b") == f"{s3_bucket}/b"


def test_read_write_list_remove(s3_bucket):
    run = fsio.join(s3_bucket, "runs", "r1")
    assert not fsio.exists(run) and fsio.listdir(run) == [] and fsio.glob(run, "*") == []
    fsio.write_json(fsio.join(run, "run.json"), {"status": "running"})
    fsio.write_bytes(fsio.join(run, "checkpoints", "pos-1", "rank0.pt"), b"x" * 10)
    assert fsio.read_json(fsio.join(run, "run.json")) == {"status": "running"}
    assert fsio.is_dir(run) and fsio.is_file(fsio.join(run, "run.json")) and not fsio.is_file(run)
    assert fsio.listdir(run) == ["checkpoints", "run.json"]
    assert fsio.glob(run, "*.json") == [fsio.join(run, "run.json")]
    assert fsio.size(fsio.join(run, "checkpoints", "pos-1", "rank0.pt")) == 10
    fsio.remove_tree(fsio.join(run, "checkpoints"))
    fsio.remove(fsio.join(run, "missing"))  # nothing to remove: no error
    assert fsio.listdir(run) == ["run.json"]


def test_ranged_reads_are_coalesced_and_ordered(s3_bucket):
    path = fsio.join(s3_bucket, "shard.tar")
    data = bytes(range(256)) * 4096  # 1 MiB
    fsio.write_bytes(path, data)
    ranges = [(900_000, 7), (10, 3), (0, 4), (20, 5)]
    assert fsio.read_ranges(path, ranges) == [data[o:o + n] for o, n in ranges]
    groups = fsio._coalesce(sorted(ranges), [2, 1, 3, 0], fsio.MAX_GAP_BYTES)
    assert [[i for i, _ in g] for g in groups] == [[2, 1, 3], [0]]  # near ranges: one request
    with fsio.open_input(path) as f:
        f.seek(1000)
        assert f.read(4) == data[1000:1004]


def test_a_failed_write_leaves_the_old_object(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMSSL_CACHE", str(tmp_path / "cache"))
    path = fsio.join(s3_bucket, "report.md")
    fsio.write_text(path, "old")
    with pytest.raises(RuntimeError), fsio.atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert fsio.read_text(path) == "old"
    shard = fsio.AtomicFile(fsio.join(s3_bucket, "stream-000000.tar"))
    shard.write(b"abc")
    assert not fsio.exists(shard.path)  # invisible until committed
    shard.commit()
    assert fsio.read_bytes(shard.path) == b"abc"
    assert list((tmp_path / "cache").iterdir()) == []  # upload staging cleaned up


def test_upload_tree_writes_manifests_last(s3_bucket, tmp_path, monkeypatch):
    order = []
    real = fsio.write_bytes
    monkeypatch.setattr(fsio, "write_bytes", lambda path, data: (order.append(fsio.name(path)), real(path, data)))
    (tmp_path / "test").mkdir()
    for rel in ("dataset.json", "shard-0.tar", "test/dataset.json", "test/manifest.parquet"):
        (tmp_path / rel).write_text(rel)
    fsio.upload_tree(tmp_path, fsio.join(s3_bucket, "ds"), last=("dataset.json",))
    assert order[-2:] == ["dataset.json", "dataset.json"] and set(order[:2]) == {"shard-0.tar", "manifest.parquet"}
    assert fsio.read_text(fsio.join(s3_bucket, "ds", "test", "dataset.json")) == "test/dataset.json"
