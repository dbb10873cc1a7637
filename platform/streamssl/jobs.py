"""Ray Jobs API for streamssl: submit a pipeline to a cluster, then follow, list, inspect or stop jobs.

What a submission ships, through the job's runtime_env:

- `py_modules`: the `streamssl` package directory itself (platform/streamssl, `__pycache__` left
  out). The data, `.venv` and `.git` live outside it, so they never travel.
- `working_dir`: a fresh temporary folder holding one file, the pipeline **resolved locally**
  (`extends:`, method presets and `key=value` overrides applied, then validated) as `NAME.yaml`.
  Inlining the resolved config means schema errors fail before anything is submitted, the job runs
  exactly the config that was checked, and a pipeline that extends files elsewhere needs nothing
  else shipped.

Paths inside the pipeline (`dataset.path`, `dataset.dir`) and the run directory are paths on the
cluster (shared storage); `STREAMSSL_DATA` and `STREAMSSL_RUNS` come from the cluster nodes'
environment. The auth token travels only in the HTTP Authorization header, never in the
runtime_env or metadata, which anyone who can list jobs can read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from streamssl.errors import StreamSSLError, first_line
from streamssl.filesystems import is_uri

if TYPE_CHECKING:
    from streamssl.config import RunConfig

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
DEFAULT_RUNS = "/tmp/streamssl-runs"  # only when the cluster sets no STREAMSSL_RUNS
ADDRESS_HELP = "pass --address http://HOST:8265 or set RAY_API_SERVER_ADDRESS"


def resolve_address(address: str | None) -> str:
    """The Jobs API URL from --address, else RAY_API_SERVER_ADDRESS, else RAY_ADDRESS (http:// added)."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local"):
        raise StreamSSLError(f"no Ray cluster address: {ADDRESS_HELP}")
    if "://" not in address:
        address = f"http://{address}"
    return address.rstrip("/")


def read_token() -> str | None:
    """The cluster token: RAY_AUTH_TOKEN, else the file at RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token.

    Returns None when RAY_AUTH_MODE=disabled or no token exists, as the `ray` CLI does.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN_PATH") and not path.is_file():
        raise StreamSSLError(f"RAY_AUTH_TOKEN_PATH: {path} does not exist")
    if not path.is_file():
        return None
    return path.read_text().strip() or None


def auth_headers() -> dict[str, str]:
    token = read_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


@contextlib.contextmanager
def api_errors(address: str) -> Iterator[None]:
    """Turn the SDK's connection, HTTP and websocket failures into one-line StreamSSLErrors."""
    import aiohttp
    from ray.exceptions import AuthenticationError

    try:
        yield
    except (OSError, RuntimeError, ValueError, aiohttp.ClientError, AuthenticationError) as err:
        raise StreamSSLError(f"Ray Jobs API at {address}: {first_line(err)}") from err


def connect(address: str | None = None, timeout_s: float = 10.0):
    """A JobSubmissionClient for the cluster, after a quick reachability probe.

    The probe has a timeout (the SDK's own version check has none, so an unroutable host would
    hang for minutes) and reports refused connections and rejected tokens as one line.
    """
    import requests
    from ray.job_submission import JobSubmissionClient

    url = resolve_address(address)
    headers = auth_headers()
    try:
        reply = requests.get(f"{url}/api/version", headers=headers, timeout=timeout_s)
    except requests.RequestException as err:
        raise StreamSSLError(f"cannot reach the Ray Jobs API at {url} ({type(err).__name__}); "
                             f"is the cluster up and the dashboard port forwarded?") from err
    if reply.status_code in (401, 403):
        raise StreamSSLError(f"the Ray cluster at {url} rejected the request (HTTP {reply.status_code}): "
                             "set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH to the cluster's token")
    if reply.status_code != 200:
        raise StreamSSLError(f"{url} is not a Ray Jobs API (HTTP {reply.status_code} on /api/version)")
    with api_errors(url):
        return JobSubmissionClient(url, headers=headers)


def submission_id(name: str) -> str:
    """A readable, unique job id: streamssl-NAME-YYYYmmdd-HHMMSS-xxxx (UTC)."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40] or "run"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"streamssl-{safe}-{stamp}-{secrets.token_hex(2)}"


def run_dir_arg(out: str | None, job_id: str) -> str:
    """The --out argument as shell text: an absolute cluster path, or $STREAMSSL_RUNS/JOB_ID."""
    if out is None:
        return f'"${{STREAMSSL_RUNS:-{DEFAULT_RUNS}}}"/{shlex.quote(job_id)}'
    if not out.startswith("/") and not is_uri(out):  # a URI names the same place from every node
        raise StreamSSLError(f"--out {out}: must be an absolute path on the cluster's shared storage or a URI "
                             "(a relative path would land in the job's temporary working directory)")
    return shlex.quote(out)


def entrypoint(pipeline_file: str, run_dir: str) -> str:
    """The job's shell command; run_dir is already shell text (see run_dir_arg)."""
    return f"python -m streamssl.cli run {shlex.quote(pipeline_file)} --out {run_dir} --no-progress"


def package_dir() -> Path:
    import streamssl

    return Path(streamssl.__file__).resolve().parent


def runtime_env(config_dir: str | Path, env: dict[str, str] | None = None) -> dict:
    """The runtime_env that ships the streamssl package and the resolved pipeline folder."""
    return {"working_dir": str(config_dir), "py_modules": [str(package_dir())],
            "excludes": ["__pycache__", "*.pyc"], "env_vars": dict(env or {})}


def parse_env(items: list[str] | None) -> dict[str, str]:
    """["A=1", "B=x"] -> {"A": "1", "B": "x"}; RAY_AUTH_* is refused (job specs are world-readable)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StreamSSLError(f"--env {item!r}: expected KEY=VALUE")
        if key.startswith("RAY_AUTH"):
            raise StreamSSLError(f"--env {key}: auth settings cannot go into a job's runtime_env")
        out[key] = value
    return out


@dataclass(frozen=True)
class Submission:
    """A job ready to submit: the locally resolved config plus what the cluster runs."""

    job_id: str
    config: RunConfig
    entrypoint: str
    env: dict
    metadata: dict


def prepare(pipeline: str | Path, overrides: list[str], out: str | None = None,
            env: dict[str, str] | None = None) -> Submission:
    """Resolve and validate the pipeline here (ConfigError names the key) before any network call."""
    from streamssl import resolve
    from streamssl.pipeline import git_sha

    config = resolve.load(pipeline, overrides)
    job_id = submission_id(config.name)
    command = entrypoint(f"{job_id}.yaml", run_dir_arg(out, job_id))
    metadata = {"streamssl_pipeline": str(pipeline), "streamssl_overrides": " ".join(overrides),
                "streamssl_out": out or f"$STREAMSSL_RUNS/{job_id}", "streamssl_git_sha": git_sha() or ""}
    return Submission(job_id, config, command, dict(env or {}), metadata)


def submit(client, job: Submission, num_cpus: float | None = None, num_gpus: float | None = None) -> str:
    """Write the resolved pipeline to a one-file working_dir, ship it with streamssl; returns the job id."""
    from streamssl import config as cfg

    with tempfile.TemporaryDirectory(prefix="streamssl-job-") as folder:
        cfg.dump(job.config, Path(folder) / f"{job.job_id}.yaml")
        with api_errors(client.get_address()):  # the SDK zips and uploads both packages here
            return client.submit_job(entrypoint=job.entrypoint, submission_id=job.job_id,
                                     runtime_env=runtime_env(folder, job.env), metadata=job.metadata,
                                     entrypoint_num_cpus=num_cpus, entrypoint_num_gpus=num_gpus)


def job_status(client, job_id: str) -> str:
    with api_errors(client.get_address()):
        return str(client.get_job_status(job_id).value)


def wait_terminal(client, job_id: str, timeout_s: float = 60.0, poll_s: float = 0.5) -> str:
    """Poll until the job is SUCCEEDED, FAILED or STOPPED (the log stream can end slightly earlier)."""
    deadline = time.monotonic() + timeout_s
    while (status := job_status(client, job_id)) not in TERMINAL:
        if time.monotonic() > deadline:
            raise StreamSSLError(f"job {job_id}: logs ended but the job is still {status}")
        time.sleep(poll_s)
    return status


def follow(client, job_id: str, write: Callable[[str], object] | None = None) -> str:
    """Stream the job's logs until it ends; returns its final status."""
    write = write or _write_stdout

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    with api_errors(client.get_address()):
        asyncio.run(tail())
    return wait_terminal(client, job_id)


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def submit_and_follow(address: str, remote, spec, out, resume: bool) -> int:
    """Ship a search or experiment spec as one Ray job (`remote`: its prepare/submit module) and follow it."""
    job = remote.prepare(spec, out, resume=resume)
    client = connect(address)
    job_id = remote.submit(client, job)
    print(job_id, flush=True)
    return follow_to_end(client, job_id)


def follow_to_end(client, job_id: str) -> int:
    """Stream a job's logs, print its final status, exit 0 on SUCCEEDED (else a one-line error).

    Ctrl-C stops following only; the job keeps running and the message says how to stop it.
    """
    try:
        status = follow(client, job_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; {job_id} keeps running (streamssl jobs stop {job_id} "
              f"--address {client.get_address()})", file=sys.stderr)
        raise
    print(status, flush=True)
    require_success(client, job_id, status)
    return 0


def require_success(client, job_id: str, status: str) -> None:
    """Raise a one-line StreamSSLError unless status is SUCCEEDED (with Ray's reason when it has one)."""
    if status == "SUCCEEDED":
        return
    with api_errors(client.get_address()):
        message = client.get_job_info(job_id).message or ""
    # Ray appends the log tail ("..., last available logs (truncated ...):\n..."); the logs were shown
    reason = re.split(r",?\s*last available logs", message.strip())[0].splitlines()
    detail = f": {reason[0]}" if reason and reason[0] else ""
    raise StreamSSLError(f"job {job_id} {status}{detail} (logs: streamssl jobs logs {job_id})")


def list_jobs(client) -> list:
    """The cluster's jobs, oldest first."""
    with api_errors(client.get_address()):
        jobs = client.list_jobs()
    return sorted(jobs, key=lambda job: job.start_time or 0)


def format_jobs(jobs: list) -> list[str]:
    """One aligned line per job: id, status, start time (UTC), duration, entrypoint."""
    rows = [("ID", "STATUS", "STARTED (UTC)", "SECONDS", "ENTRYPOINT")]
    for job in jobs:
        start = _utc(job.start_time)
        end = job.end_time or (time.time() * 1000 if job.start_time else None)
        seconds = f"{(end - job.start_time) / 1000:.0f}" if job.start_time and end else "-"
        entry = job.entrypoint if len(job.entrypoint) <= 70 else job.entrypoint[:67] + "..."
        rows.append((job.submission_id or job.job_id or "-", str(job.status.value), start, seconds, entry))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[4]]).rstrip() for row in rows]


def _utc(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def describe(client, job_id: str) -> list[str]:
    """Status, Ray's message and the run dir of one job, as lines."""
    with api_errors(client.get_address()):
        info = client.get_job_info(job_id)
    lines = [f"{job_id}: {info.status.value}"]
    if info.message:
        lines.append(f"  message: {info.message.strip().splitlines()[0]}")
    if (info.metadata or {}).get("streamssl_out"):
        lines.append(f"  run dir: {info.metadata['streamssl_out']}")
    lines.append(f"  entrypoint: {info.entrypoint}")
    return lines


def logs(client, job_id: str) -> str:
    with api_errors(client.get_address()):
        return client.get_job_logs(job_id)


def stop(client, job_id: str) -> bool:
    """Ask the cluster to stop the job; False if it had already ended."""
    with api_errors(client.get_address()):
        return bool(client.stop_job(job_id))
