"""Checkpoints load with torch.load(weights_only=True): a tampered file cannot run code."""

import hashlib
import json
import os

import pytest
import torch

from streamssl import resolve
from streamssl.errors import StreamSSLError
from streamssl.train.checkpoint import load_checkpoint, save_checkpoint
from streamssl.train.learner import Learner


class RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_checkpoint_whose_pickle_would_run_a_command_is_refused(tmp_path, one_thread):
    config = resolve.load("pipelines/smoke.yaml", ["method.crops=2", "buffer.policy=reservoir"])
    learner = Learner(config, torch.device("cpu"), total_updates=2)
    save_checkpoint(tmp_path, 0, learner, {})
    marker = tmp_path / "marker"
    torch.save({"loop_state": RunsCommand(f"touch {marker}")}, tmp_path / "rank0.pt")
    manifest = json.loads((tmp_path / "rank0.done").read_text())  # a consistent manifest, as an attacker would
    data = (tmp_path / "rank0.pt").read_bytes()
    manifest["files"]["rank0.pt"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (tmp_path / "rank0.done").write_text(json.dumps(manifest))
    with pytest.raises(StreamSSLError, match="rank0.pt holds objects other than tensors"):
        load_checkpoint(tmp_path, 0, learner)
    assert not marker.exists()
