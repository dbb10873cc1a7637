"""CIFAR python-pickle batches are read with a restricted unpickler: data files never run code."""

import os
import pickle

import numpy as np
import pytest

from streamssl.cli import main
from streamssl.errors import DataError
from streamssl.ingest import cifar, prepare


class RunsCommand:
    """Unpickling this calls os.system(command): what a hostile 'data' file would do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class CallsEval:
    def __reduce__(self):
        return eval, ("__import__('pathlib').Path('evaluated').touch()",)


def _batch(n: int, seed: int = 0) -> dict:
    """A batch laid out like the real files: bytes keys, a uint8 (n, 3072) array, lists."""
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"training batch 1 of 5", b"labels": [int(i) % 10 for i in range(n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_cifar_style_batch_still_loads(tmp_path, protocol):
    batch = _batch(6)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    loaded = cifar._unpickle(path)
    assert loaded[b"labels"] == batch[b"labels"] and loaded[b"filenames"] == batch[b"filenames"]
    assert loaded[b"data"].dtype == np.uint8 and np.array_equal(loaded[b"data"], batch[b"data"])
    assert loaded[b"batch_label"] == batch[b"batch_label"]


@pytest.mark.parametrize("payload", ["reduce", "eval", "inside an object array"])
def test_a_pickle_that_would_run_code_is_refused_naming_the_file(cifar10_dir, tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)  # CallsEval would touch ./evaluated
    marker = tmp_path / "marker"
    hostile = {"reduce": RunsCommand(f"touch {marker}"), "eval": CallsEval(),
               "inside an object array": np.array([RunsCommand(f"touch {marker}")], dtype=object)}[payload]
    batch = {**_batch(2, seed=3), b"labels": [0, 1], b"extra": hostile}
    (cifar10_dir / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3: not a CIFAR pickle .*refusing to load"):
        prepare("cifar10", cifar10_dir, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "evaluated").exists()


def test_the_cli_reports_a_hostile_batch_in_one_line(cifar10_dir, tmp_path, capsys):
    marker = tmp_path / "marker"
    (cifar10_dir / "test_batch").write_bytes(pickle.dumps(RunsCommand(f"touch {marker}")))
    assert main(["prepare", "cifar10", str(cifar10_dir), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test_batch" in err[0] and "posix.system" in err[0], err
    assert not marker.exists()


def test_check_layout_names_the_first_missing_file(cifar10_dir):
    cifar.check_layout(cifar10_dir, "cifar10")
    cifar.check_layout(cifar10_dir.parent, "cifar10")  # the folder the tarball was unpacked in
    (cifar10_dir / "data_batch_4").unlink()
    with pytest.raises(Exception, match=r"^PATH: .*data_batch_4 is missing"):
        cifar.check_layout(cifar10_dir, "cifar10")
