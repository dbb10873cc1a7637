"""`streamssl submit` / `streamssl jobs` against a real Ray head on 127.0.0.1, plus the pure helpers.

The head is the `ray_head` fixture (tests/conftest.py, started by tests/rayhead.py): a separate
cluster this test process only talks HTTP to, never the session's `ray_local`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray.job_submission  # noqa: F401 - import now: Ray's log handler binds the sys.stderr of its import
import yaml

from rayhead import free_ports
from streamssl import jobs, resolve
from streamssl.cli import main

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "pipelines" / "smoke.yaml")
MICRO = ["learner.k=1", "method.crops=2", "eval.points=[0,1]", "dataset.options.samples_per_class=16",
         "eval.memory_samples=32", "eval.test_samples=32", "eval.knn_k=3"]

@pytest.fixture
def client_env(monkeypatch):
    """No cluster address or token from the outside."""
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_submit_follow_succeeds_and_writes_report(ray_head, client_env, tmp_path, capsys):
    from ray.job_submission import JobSubmissionClient

    out = tmp_path / "run"
    code = main(["submit", SMOKE, *MICRO, "--address", ray_head, "--out", str(out),
                 "--env", f"STREAMSSL_DATA={tmp_path / 'data'}", "--follow"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 0, printed[-20:]
    job_id, status = printed[0], printed[-1]
    assert job_id.startswith("streamssl-smoke-") and status == "SUCCEEDED"

    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed" and run["method"] == "imai"
    assert "Final kNN accuracy" in (out / "report.md").read_text()
    # the job ran the config resolved here, overrides included
    assert yaml.safe_load((out / "config.yaml").read_text()) == resolve.load(SMOKE, MICRO).to_dict()

    info = JobSubmissionClient(ray_head).get_job_info(job_id)
    assert info.job_id is not None  # its driver joined this cluster instead of starting a private Ray
    assert info.runtime_env["py_modules"][0].startswith("gcs://")  # streamssl shipped, not read from disk

    assert main(["jobs", "list", "--address", ray_head]) == 0
    listing = capsys.readouterr().out
    assert any(line.startswith(job_id) and "SUCCEEDED" in line for line in listing.splitlines())


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_failed_job_prints_failed_and_exits_nonzero(ray_head, client_env, tmp_path, capsys):
    missing = tmp_path / "not-on-the-cluster"
    code = main(["submit", SMOKE, "dataset.source=imagefolder", "dataset.options={}",
                 f"dataset.path={missing}", "--address", ray_head, "--out", str(tmp_path / "run"), "--follow"])
    captured = capsys.readouterr()
    job_id, status = captured.out.splitlines()[0], captured.out.strip().splitlines()[-1]
    assert code != 0 and status == "FAILED"
    assert str(missing) in captured.out  # the job's own one-line error came through the log stream
    error = captured.err.strip().splitlines()
    assert error[-1].startswith(f"streamssl submit: error: job {job_id} FAILED")
    assert "Traceback" not in captured.err, captured.err[-4000:]

    assert main(["jobs", "status", job_id, "--address", ray_head]) == 0
    assert f"{job_id}: FAILED" in capsys.readouterr().out
    assert main(["jobs", "stop", job_id, "--address", ray_head]) == 0
    assert "already finished" in capsys.readouterr().out


def test_unreachable_address_is_one_line_error(client_env, capsys):
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    for argv in (["submit", SMOKE, "--address", url, "--follow"], ["jobs", "list", "--address", url]):
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert err[0].startswith(f"streamssl {argv[0]}: error: cannot reach the Ray Jobs API at {url}")


def test_config_errors_fail_before_any_connection(client_env, capsys):
    assert main(["submit", SMOKE, "learner.bogus=1", "--address", "http://127.0.0.1:9"]) == 2
    assert "learner.bogus: unknown key" in capsys.readouterr().err
    assert main(["submit", SMOKE, "--out", "runs/x", "--address", "http://127.0.0.1:9"]) == 2
    assert "must be an absolute path" in capsys.readouterr().err


def test_address_falls_back_to_env(client_env, monkeypatch):
    with pytest.raises(jobs.StreamSSLError, match="no Ray cluster address"):
        jobs.resolve_address(None)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:8265")
    assert jobs.resolve_address(None) == "http://10.0.0.1:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "https://head:8265/")
    assert jobs.resolve_address(None) == "https://head:8265"
    assert jobs.resolve_address("http://other:1") == "http://other:1"


def test_token_goes_only_into_the_header(client_env, monkeypatch, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert jobs.auth_headers() == {"Authorization": "Bearer from-file"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert jobs.auth_headers() == {"Authorization": "Bearer from-env"}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert jobs.auth_headers() == {}
    with pytest.raises(jobs.StreamSSLError, match="RAY_AUTH_TOKEN"):
        jobs.parse_env(["RAY_AUTH_TOKEN=x"])


def test_submission_ships_the_package_and_a_resolved_pipeline(tmp_path):
    job = jobs.prepare(SMOKE, ["learner.k=1"], env={"A": "1"})
    assert job.config == resolve.load(SMOKE, ["learner.k=1"])
    assert job.entrypoint.startswith(f"python -m streamssl.cli run {job.job_id}.yaml --out ")
    assert '"${STREAMSSL_RUNS:-' in job.entrypoint and "--no-progress" in job.entrypoint
    env = jobs.runtime_env(tmp_path, job.env)
    package = Path(env["py_modules"][0])
    assert package.name == "streamssl" and (package / "cli.py").is_file()
    assert not any((package / name).exists() for name in (".venv", ".git", "data"))
    assert env["working_dir"] == str(tmp_path) and env["env_vars"] == {"A": "1"}
    assert "__pycache__" in env["excludes"]
