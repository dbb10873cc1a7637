"""prepare -> stream -> run -> report -> resume with every path an s3:// URI on a loopback server.

Nothing may be written to the local disk but caches: the test runs in an empty working directory
with STREAMSSL_CACHE inside it, and the directory holds nothing else afterwards.
"""

import json

import pytest

from streamssl import fsio
from streamssl.cli import main

pytestmark = pytest.mark.ray

MICRO = ["method.crops=2", "learner.threads=1", "eval.points=[0,1]", "checkpoint.every=2", "checkpoint.keep=10",
         "eval.linear=off"]


def test_the_whole_path_runs_on_object_storage(s3_bucket, bare_cwd, request):
    pipeline = str(request.config.rootpath / "pipelines" / "smoke.yaml")
    data, stream, run = (fsio.join(s3_bucket, name) for name in ("ds", "streams/seq", "runs/r1"))
    assert main(["prepare", "synthetic", "--out", data, "--classes", "4", "--samples-per-class", "32",
                 "--size", "16"]) == 0
    assert main(["stream", data, "--kind", "seq", "--out", stream]) == 0
    assert fsio.read_json(fsio.join(stream, "stream.json"))["num_samples"] == 128
    assert main(["run", pipeline, f"dataset.dir={data}", *MICRO, "--out", run, "--no-progress"]) == 0
    info = fsio.read_json(fsio.join(run, "run.json"))
    assert info["status"] == "completed" and info["samples_seen"] == 128
    names = fsio.listdir(run)
    assert {"metrics.parquet", "model.pt", "report.md", "knn_vs_progress.png", "checkpoints"} <= set(names)
    assert any(n.startswith("events.out.tfevents") for n in names)  # TensorBoard, uploaded at close
    assert len(fsio.glob(fsio.join(run, "checkpoints"), "pos-*")) == 4

    report = fsio.join(s3_bucket, "reports", "r1")
    assert main(["report", run, "--out", report]) == 0
    assert "| untrained |" in fsio.read_text(fsio.join(report, "report.md"))

    # stopped after its first checkpoint: resume reads that checkpoint from the bucket
    for later in fsio.glob(fsio.join(run, "checkpoints"), "pos-*")[1:]:
        fsio.remove_tree(later)
    fsio.write_json(fsio.join(run, "run.json"), {**info, "status": "interrupted"})
    full_knn = fsio.read_dataframe(fsio.join(run, "metrics.parquet"))
    assert main(["run", "--resume", run, "--no-progress"]) == 0
    resumed = fsio.read_json(fsio.join(run, "run.json"))
    assert resumed["status"] == "completed" and resumed["samples_seen"] == 128
    knn = fsio.read_dataframe(fsio.join(run, "metrics.parquet"))
    pick = lambda f: list(f[f.metric == "eval/knn_top1"].value)  # noqa: E731
    assert pick(knn) == pick(full_knn)  # the resumed run ends where the uninterrupted one did

    assert [p.name for p in bare_cwd.iterdir()] == ["cache"]  # nothing but the cache on local disk
    assert json.loads(fsio.read_text(fsio.join(run, "progress.json")))["samples_seen"] == 128


def test_a_virtual_stream_in_the_bucket_reads_the_materialized_rows(s3_bucket, bare_cwd):
    """Ranged reads from the dataset's shards in the bucket (several GETs in flight per read task)
    give the rows and pixels of the materialized stream in the same bucket."""
    import numpy as np

    from streamssl.streams import read_stream

    data, real, virtual = (fsio.join(s3_bucket, name) for name in ("ds", "streams/seq", "streams/seq-virtual"))
    assert main(["prepare", "synthetic", "--out", data, "--classes", "4", "--samples-per-class", "12",
                 "--size", "16", "--shard-size", "5"]) == 0  # a class's samples span shards: several ranges
    assert len(fsio.glob(data, "*.tar")) >= 9
    assert main(["stream", data, "--kind", "seq", "--seed", "3", "--out", real]) == 0
    assert main(["stream", data, "--kind", "seq", "--seed", "3", "--out", virtual, "--virtual"]) == 0
    assert sorted(fsio.listdir(virtual)) == ["index.parquet", "stream.json"]
    for rank in range(2):
        a, b = (_rows(read_stream(s, rank=rank, world_size=2, block=4, chunk_bytes=600)) for s in (real, virtual))
        assert len(a["pos"]) == 24 and not any(b["skip"])
        assert all(np.array_equal(a[c], b[c]) for c in ("pos", "key", "label", "image"))


def _rows(ds) -> dict:
    import numpy as np

    batches = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    return {c: np.concatenate([b[c] for b in batches]) for c in batches[0]}
