"""Cross-process progress: rank 0 publishes (and records progress.json), a driver-side bar follows the board."""

import json
import time

from streamssl.train.progress import (
    PROGRESS_FILE,
    ProgressBoard,
    ProgressFollower,
    ProgressWriter,
    install_publisher,
    read_progress,
)


def test_writer_throttles_and_replaces_atomically(tmp_path):
    writer = ProgressWriter(tmp_path, every=60.0)
    writer.write(samples_seen=10, knn="0.500")
    writer.write(samples_seen=20)  # within `every`: skipped
    assert read_progress(tmp_path) == {"samples_seen": 10, "knn": "0.500"}
    writer.write(force=True, samples_seen=30)
    assert json.loads((tmp_path / PROGRESS_FILE).read_text()) == {"samples_seen": 30}
    assert [p.name for p in tmp_path.iterdir()] == [PROGRESS_FILE]  # no temp files left behind


def test_follower_tracks_the_published_position_not_the_file(tmp_path, capsys):
    (tmp_path / PROGRESS_FILE).write_text(json.dumps({"samples_seen": 999}))  # a file no driver reads
    board = ProgressBoard()
    install_publisher(board.put)
    try:
        with ProgressFollower(board.get, total=100, desc="run", poll=0.05) as follower:
            ProgressWriter(tmp_path).write(samples_seen=100, loss="1.234")
            time.sleep(0.3)
    finally:
        install_publisher(None)
    assert not follower._thread.is_alive()
    assert follower.last == {"samples_seen": 100, "loss": "1.234"}
    err = capsys.readouterr().err
    assert "100/100" in err and "loss=1.234" in err


def test_follower_survives_a_failing_source(capsys):
    def broken():
        raise ConnectionError("actor gone")

    with ProgressFollower(broken, total=10, desc="run", poll=0.02) as follower:
        time.sleep(0.1)
    assert follower.last is None and not follower._thread.is_alive()


def test_read_progress_tolerates_missing_and_torn_files(tmp_path):
    assert read_progress(tmp_path) is None
    (tmp_path / PROGRESS_FILE).write_text('{"samples_se')
    assert read_progress(tmp_path) is None
