"""A 2-worker Ray Train run on a 2-node local cluster with no shared filesystem.

Each node runs in its own working directory and is started without the AWS_* variables; the run
dir exists only as an s3:// URI on the loopback server. The driver is a separate process (the
CLI), as on a real cluster. Progress must reach the driver through Ray, metrics and checkpoints
the bucket, and a resume must read its checkpoint from the bucket and end exactly where the
uninterrupted run ended (kNN at every point, each rank's buffer).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from multinode import running_cluster
from streamssl import fsio
from streamssl.cli import main
from streamssl.pipeline.lifecycle import checkpoint_dirs

MICRO = ["method.crops=2", "learner.threads=1", "eval.points=[0,1]", "checkpoint.every=2", "checkpoint.keep=10",
         "eval.linear=off", "scaling.num_workers=2", "scaling.cpus_per_worker=1.5", "learner.stream_batch=16"]


def _cli(args: list[str], address: str, cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_ADDRESS": address, "STREAMSSL_CACHE": str(cwd / "cache")}
    code = "import sys; from streamssl.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _node_cwds(address: str) -> set[str]:
    """The working directory of a task on each node of the cluster."""
    code = textwrap.dedent("""
        import os, ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        cwd = ray.remote(num_cpus=0)(lambda: os.getcwd())
        print(sorted(ray.get([cwd.options(scheduling_strategy=On(n["NodeID"], soft=False)).remote()
                              for n in ray.nodes() if n["Alive"]])))
    """)
    env = {**os.environ, "RAY_ADDRESS": address}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(eval(out.stdout.strip().splitlines()[-1]))  # noqa: S307 (our own printed list)


def _buffer_keys(run: str) -> list:
    """Each rank's final buffer contents (dataset keys)."""
    return [fsio.read_json(fsio.join(run, f"buffer_keys.rank{rank}.json")) for rank in range(2)]


@pytest.mark.timeout(900)
def test_two_nodes_share_nothing_but_the_bucket(s3_bucket, tmp_path, request):
    nodes = [tmp_path / "node-a", tmp_path / "node-b"]
    driver = tmp_path / "driver"
    for folder in (*nodes, driver):
        folder.mkdir()
    data, run = fsio.join(s3_bucket, "ds"), fsio.join(s3_bucket, "runs", "r1")
    assert main(["prepare", "synthetic", "--out", data, "--classes", "4", "--samples-per-class", "32",
                 "--size", "16"]) == 0
    pipeline = str(request.config.rootpath / "pipelines" / "smoke.yaml")
    with running_cluster(nodes) as address:
        assert _node_cwds(address) == {str(n) for n in nodes}
        first = _cli(["run", pipeline, f"dataset.dir={data}", *MICRO, "--out", run], address, driver)
        info = fsio.read_json(fsio.join(run, "run.json"))
        assert info["status"] == "completed" and info["samples_seen"] == 128
        ranks = {fsio.read_text(fsio.join(run, "workers", f"rank{r}.node")) for r in range(2)}
        assert len(ranks) == 2  # one worker on each node
        assert "128/128" in first.stderr  # the driver's bar, fed through a Ray actor
        checkpoints = checkpoint_dirs(run)  # Ray Train's, under RUN_DIR/ray_train/ in the bucket
        assert len(checkpoints) == 2  # after stream steps 2 and 4 of each worker
        assert all(fsio.exists(fsio.join(c, f"rank{r}.done")) for c in checkpoints for r in range(2))

        # interrupted after its first checkpoint: the resume reads that one from the bucket
        full, full_keys = fsio.read_dataframe(fsio.join(run, "metrics.parquet")), _buffer_keys(run)
        assert all(full_keys)
        for later in checkpoints[1:]:
            fsio.remove_tree(later)
        fsio.write_json(fsio.join(run, "run.json"), {**info, "status": "interrupted"})
        _cli(["run", "--resume", run, "--no-progress"], address, driver)
    resumed = fsio.read_json(fsio.join(run, "run.json"))
    assert resumed["status"] == "completed" and resumed["samples_seen"] == 128
    knn = fsio.read_dataframe(fsio.join(run, "metrics.parquet"))
    pick = lambda f: list(f[f.metric == "eval/knn_top1"].value)  # noqa: E731
    assert pick(knn) == pick(full) and _buffer_keys(run) == full_keys  # ends where the uninterrupted run did
    for folder in nodes:  # the workers wrote nothing where they ran
        assert not any(folder.iterdir()), sorted(p.name for p in folder.iterdir())
    assert sorted(p.name for p in driver.iterdir()) in ([], ["cache"])
