"""A private Ray head for tests that talk to a cluster over HTTP (`streamssl submit` / `jobs`).

The head is a separate cluster started with the venv's `ray start --head --block` in a subprocess
(the venv's bin on PATH, as on a cluster node), never the session's `ray_local`: the test process
only talks HTTP to it. It is stopped by its PID; `ray stop` is not used as a fallback because it
kills every Ray process of the user on the machine (the session's cluster and other engineers'),
so leftovers are killed by PID: our process group, then processes whose command line names our
private temp dir. The fixture itself is `ray_head` in tests/conftest.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

VENV_BIN = Path(sys.executable).parent


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (all sockets held open until every port is picked)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def head_command(temp: Path, ports: list[int]) -> list[str]:
    gcs, dashboard, client, agent, agent_grpc, metrics, env_agent = ports
    return [str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
            f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={env_agent}", f"--temp-dir={temp}", "--num-cpus=2",
            f"--object-store-memory={300 << 20}", "--include-dashboard=true", "--disable-usage-stats"]


def wait_for_jobs_api(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 150.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/api/version", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"the Jobs API at {url} did not come up in {timeout_s:.0f} s")


def stop_head(proc: subprocess.Popen, temp: Path) -> None:
    """SIGTERM makes `ray start --block` drain and stop its node; then kill leftovers by PID."""
    proc.terminate()
    try:
        proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    for pid in _pids_naming(str(temp)):
        with_ignored(os.kill, pid, signal.SIGKILL)
    with_ignored(os.killpg, proc.pid, signal.SIGKILL)


def _pids_naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def with_ignored(fn, *args) -> None:
    try:
        fn(*args)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def running_head() -> Iterator[str]:
    """A private Ray head (dashboard and Jobs API on 127.0.0.1, auth disabled); yields its URL."""
    temp = Path(tempfile.mkdtemp(prefix="sj", dir="/tmp"))  # short: AF_UNIX socket paths are capped
    ports = free_ports(7)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}  # nothing to drain: stop at once
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(key, None)
    log = temp / "head.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(head_command(temp, ports), env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        url = f"http://127.0.0.1:{ports[1]}"
        wait_for_jobs_api(url, proc, log)
        yield url
    finally:
        stop_head(proc, temp)
        subprocess.run(["rm", "-rf", str(temp)], check=False)
