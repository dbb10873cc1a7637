"""A local multi-node Ray cluster (`ray.cluster_utils.Cluster`) in its own process, for tests.

Each node's raylet, and so every worker it starts, runs in its own working directory and without
the AWS_* variables: nothing a worker writes to its working directory is seen by another node or
the driver, and object-storage settings must reach workers through Ray (the run's runtime env).
The cluster lives in a child process because `Cluster.shutdown` resets Ray's process-global
state, which would break the test session's own `ray_local`.

Run as a script: `python multinode.py NODE_DIR [NODE_DIR ...]` starts one node per folder (the
first is the head), prints {"address": ...} as one JSON line when all are up, and stops the
cluster when its stdin closes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CPUS_PER_NODE = 2
NODE_ARGS = {"num_cpus": CPUS_PER_NODE, "object_store_memory": 200 << 20, "include_dashboard": False}


@contextmanager
def running_cluster(node_dirs: list[Path], timeout_s: float = 180.0) -> Iterator[str]:
    """Start the cluster in a child process; yields its GCS address."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, __file__, *map(str, node_dirs)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = _first_line(proc, timeout_s)
        yield json.loads(line)["address"]
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)


def _first_line(proc: subprocess.Popen, timeout_s: float) -> str:
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            raise RuntimeError(f"the multi-node cluster did not come up in {timeout_s:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the multi-node cluster process exited with {proc.wait()}")
    return line


def _serve(node_dirs: list[str]) -> None:
    from ray.cluster_utils import Cluster

    os.chdir(node_dirs[0])  # a raylet's working directory is its workers'
    cluster = Cluster(initialize_head=True, connect=False, head_node_args=NODE_ARGS)
    try:
        for folder in node_dirs[1:]:
            os.chdir(folder)
            cluster.add_node(**NODE_ARGS)
        cluster.wait_for_nodes()
        print(json.dumps({"address": cluster.address}), flush=True)
        sys.stdin.read()  # until the test closes our stdin
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    _serve(sys.argv[1:])
