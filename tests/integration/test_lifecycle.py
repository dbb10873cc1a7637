"""Run lifecycle: refusing to mix runs, --overwrite, resume that never writes first, and the whole
stream used by one worker (the smoke stream of 60 samples ends with a short batch of 12)."""

import json
import shutil

import pandas as pd
import pytest

from streamssl.cli import main

pytestmark = pytest.mark.ray

# 60 samples: the kNN memory takes them all, so no validation subset
FAST = ["method.crops=2", "learner.threads=1", "eval.linear_epochs=2", "dataset.options.samples_per_class=15",
        "eval.val_samples=0"]


def snapshot(run_dir):
    """Every file of a run with its bytes: anything written shows up as a difference."""
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def run_json(run_dir):
    return json.loads((run_dir / "run.json").read_text())


@pytest.fixture(scope="module")
def completed(data_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("completed") / "run"
    assert main(["run", "pipelines/smoke.yaml", *FAST, "--out", str(run_dir), "--no-progress"]) == 0
    return run_dir


def test_one_worker_trains_on_the_whole_stream_and_evaluates_at_its_last_sample(completed):
    info = run_json(completed)  # 4 classes x 15 = 60 samples in stream batches of 16: 16, 16, 16, 12
    assert info["status"] == "completed" and info["samples_seen"] == 60 == info["stream_samples"]
    assert info["updates"] == 4 and info["unused_samples"] == 0
    metrics = pd.read_parquet(completed / "metrics.parquet")
    assert list(metrics.query("metric == 'eval/knn_top1'").samples_seen) == [0, 32, 60]
    assert list(metrics.query("metric == 'eval/linear_top1'").samples_seen) == [60]


def test_resume_of_a_completed_run_says_so_and_touches_nothing(completed, capsys):
    before = snapshot(completed)
    assert main(["run", "--resume", str(completed), "--no-progress"]) == 0
    assert "already completed" in capsys.readouterr().out
    assert snapshot(completed) == before


def test_resume_without_a_checkpoint_fails_before_writing_anything(completed, tmp_path, capsys):
    run_dir = tmp_path / "failed"
    shutil.copytree(completed, run_dir)
    (run_dir / "run.json").write_text(json.dumps({**run_json(completed), "status": "failed", "error": "x"}))
    before = snapshot(run_dir)
    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err
    assert snapshot(run_dir) == before  # run.json not set to running, final_knn etc. not deleted


def test_a_second_run_into_a_run_directory_is_refused_until_overwrite(completed, tmp_path, capsys):
    run_dir = tmp_path / "again"
    shutil.copytree(completed, run_dir)
    before = snapshot(run_dir)
    assert main(["run", "pipelines/smoke.yaml", *FAST, "--out", str(run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err and "--resume" not in err  # completed: nothing to resume
    assert snapshot(run_dir) == before
    old_events = {p.name for p in run_dir.glob("events.out.tfevents.*")}
    (run_dir / "notes.txt").write_text("mine")
    assert main(["run", "pipelines/smoke.yaml", *FAST, "learner.k=2", "--out", str(run_dir), "--overwrite",
                 "--no-progress"]) == 0
    events = {p.name for p in run_dir.glob("events.out.tfevents.*")}
    assert len(events) == 1 and not events & old_events  # TensorBoard shows the new run alone
    assert run_json(run_dir)["updates"] == 8 and (run_dir / "notes.txt").read_text() == "mine"


def test_out_directories_that_are_not_for_this_output_are_refused(completed, tmp_path, capsys):
    dataset_dir = run_json(completed)["dataset_dir"]
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "thesis.tex").write_text("")
    (tmp_path / "file").write_text("")
    other_run = tmp_path / "other"
    shutil.copytree(completed, other_run)
    refused = [
        (["run", "pipelines/smoke.yaml", "--out", dataset_dir], "is a prepared dataset"),
        (["run", "pipelines/smoke.yaml", "--out", str(stray)], "holds no streamssl run"),
        (["run", "pipelines/smoke.yaml", "--out", str(stray), "--overwrite"], "holds no streamssl run"),
        (["run", "pipelines/smoke.yaml", "--out", str(tmp_path / "file")], "is not a folder"),
        (["report", str(completed), "--out", dataset_dir], "is a prepared dataset"),
        (["report", str(completed), "--out", str(other_run)], "is a run directory"),
        (["report", str(completed), "--out", str(tmp_path / "file")], "is not a folder"),
    ]
    for argv, message in refused:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (argv, err)
    assert snapshot(other_run) == snapshot(completed)
    assert main(["report", str(completed), "--out", str(completed)]) == 0  # a run's own report, rewritten
    assert main(["report", str(completed), "--out", str(tmp_path / "new")]) == 0
