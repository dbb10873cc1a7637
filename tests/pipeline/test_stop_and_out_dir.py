"""Run-directory rules and the stop-on-signal handler, without a run."""

import json
import os
import signal

import pytest

from streamssl.errors import StreamSSLError
from streamssl.pipeline.lifecycle import STOP_FILE, StopOnSignal, check_out_dir, clear_run, stop_requested


def test_the_first_signal_asks_for_a_stop_the_second_stops_at_once(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    with StopOnSignal(tmp_path) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop_requested(tmp_path) and stop.received == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before and not (tmp_path / STOP_FILE).exists()


def test_an_earlier_stop_request_is_not_taken_for_this_run(tmp_path):
    (tmp_path / STOP_FILE).write_text("SIGINT\n")
    with StopOnSignal(tmp_path):
        assert not stop_requested(tmp_path)


def test_clear_run_removes_run_outputs_and_keeps_other_files(tmp_path):
    for name in ("run.json", "config.yaml", "metrics.csv", "events.out.tfevents.1.host.2.0", "report.md",
                 "knn_vs_progress.png", "trial_starts.txt", "notes.md"):
        (tmp_path / name).write_text("x")
    (tmp_path / "checkpoints" / "pos-000000000016").mkdir(parents=True)
    clear_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.md", "trial_starts.txt"]


def test_check_out_dir(tmp_path):
    check_out_dir(tmp_path / "new", overwrite=False)  # a new or empty directory is fine
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "interrupted", "num_workers": 1}))
    with pytest.raises(StreamSSLError, match="status interrupted.*--overwrite") as err:
        check_out_dir(run, overwrite=False)
    assert "--resume" not in str(err.value)  # no checkpoint: nothing to resume
    check_out_dir(run, overwrite=True)
    assert not any(run.iterdir())
