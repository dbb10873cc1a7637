"""The cross-process progress file: rank 0 writes it, a driver-side bar follows it."""

import json
import time

from streamssl.train.progress import PROGRESS_FILE, ProgressFollower, ProgressWriter, read_progress


def test_writer_throttles_and_replaces_atomically(tmp_path):
    writer = ProgressWriter(tmp_path, every=60.0)
    writer.write(samples_seen=10, knn="0.500")
    writer.write(samples_seen=20)  # within `every`: skipped
    assert read_progress(tmp_path) == {"samples_seen": 10, "knn": "0.500"}
    writer.write(force=True, samples_seen=30)
    assert json.loads((tmp_path / PROGRESS_FILE).read_text()) == {"samples_seen": 30}
    assert [p.name for p in tmp_path.iterdir()] == [PROGRESS_FILE]  # no temp files left behind


def test_follower_tracks_the_file_and_clears_a_stale_one(tmp_path, capsys):
    (tmp_path / PROGRESS_FILE).write_text(json.dumps({"samples_seen": 999}))  # an earlier run's
    with ProgressFollower(tmp_path, total=100, desc="run", poll=0.05) as follower:
        assert read_progress(tmp_path) is None
        ProgressWriter(tmp_path).write(samples_seen=100, loss="1.234")
        time.sleep(0.3)
    assert not follower._thread.is_alive()
    err = capsys.readouterr().err
    assert "100/100" in err and "loss=1.234" in err


def test_read_progress_tolerates_missing_and_torn_files(tmp_path):
    assert read_progress(tmp_path) is None
    (tmp_path / PROGRESS_FILE).write_text('{"samples_se')
    assert read_progress(tmp_path) is None
