import hashlib
import json
import logging
import math
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from streamssl import resolve
from streamssl.buffers import POLICIES
from streamssl.errors import StreamSSLError
from streamssl.train.checkpoint import (
    is_complete,
    latest_complete,
    load_checkpoint,
    save_checkpoint,
)
from streamssl.train.learner import Learner

N_BATCHES, SPLIT = 6, 3
CONFIGS = {
    "imai-diverse": ["method.crops=2", "learner.k=2", "learner.lr_schedule=cosine"],
    "minred-diverse": ["method.name=minred", "learner.k=2"],
    "imai-reservoir": ["method.crops=2", "buffer.policy=reservoir", "learner.k=2"],
    # the batch saved at the cut is still protected: the resumed run must keep honouring that
    "imai-diverse-protected": ["method.crops=2", "learner.k=2", "buffer.protect_new=1"],
    "minred-reservoir-protected": ["method.name=minred", "learner.k=2", "buffer.policy=reservoir",
                                   "buffer.protect_new=2"],
}


pytestmark = pytest.mark.single_thread


def make(overrides):
    config = resolve.load("pipelines/smoke.yaml", overrides)
    return Learner(config, torch.device("cpu"), total_updates=N_BATCHES * 2)


def batch(i, b=16, size=16):
    g = torch.Generator().manual_seed(1000 + i)
    images = torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)
    return images, [f"k{i}_{j}" for j in range(b)], torch.full((b,), i % 4)


def feed(learner, batches):
    """(loss, lr, grad_cosine) of every update, as the loop would log them."""
    out = []
    for i in batches:
        results = learner.observe(*batch(i))
        out += [(r.loss, r.lr, r.grad_cosine) for r in results]
        if results:
            learner.last_loss = results[-1].loss
    return out


def assert_same_learner(a, b):
    for (name, pa), pb in zip(a.method.state_dict().items(), b.method.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert a.buffer.keys == b.buffer.keys
    assert torch.equal(a.buffer.features, b.buffer.features)
    assert torch.equal(a.buffer.lifespan, b.buffer.lifespan)
    assert torch.equal(a.buffer.seen, b.buffer.seen)
    assert torch.equal(a.buffer.images, b.buffer.images)
    assert torch.equal(a.aug_gen.get_state(), b.aug_gen.get_state())
    assert torch.equal(a.buffer_gen.get_state(), b.buffer_gen.get_state())
    assert a.update == b.update and a.optimizer.param_groups[0]["lr"] == b.optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_resume_from_a_checkpoint_continues_bit_identically(tmp_path, name):
    whole = make(CONFIGS[name])
    expected = feed(whole, range(N_BATCHES))

    first = make(CONFIGS[name])
    head = feed(first, range(SPLIT))
    loop_state = {"samples_seen": 16 * SPLIT, "class_seen_counts": {0: 16, 1: 16, 2: 16},
                  "evals": [(0, 0.25), (48, np.float64(0.5))], "last_knn": math.nan}
    save_checkpoint(tmp_path, 0, first, loop_state)
    del first
    torch.manual_seed(123)  # the fresh learner must not depend on the global RNG's state either
    resumed = make(CONFIGS[name])
    restored = load_checkpoint(tmp_path, 0, resumed)
    tail = feed(resumed, range(SPLIT, N_BATCHES))

    assert head + tail == expected  # losses, LRs and gradient cosines (continuity across the cut)
    assert tail[0][2] is not None
    assert_same_learner(whole, resumed)
    assert restored["evals"] == [(0, 0.25), (48, 0.5)] and restored["class_seen_counts"][2] == 16
    assert math.isnan(restored["last_knn"])


def test_fresh_diverse_policy_selects_what_the_cached_one_would(tmp_path):
    # the checkpoint carries the policy's neighbour cache; resuming without it must not change a thing
    whole = make(CONFIGS["imai-diverse"])
    feed(whole, range(N_BATCHES))
    first = make(CONFIGS["imai-diverse"])
    feed(first, range(SPLIT))
    assert first.policy.state_dict()  # there is a cache to drop
    save_checkpoint(tmp_path, 0, first, {})
    resumed = make(CONFIGS["imai-diverse"])
    load_checkpoint(tmp_path, 0, resumed)
    resumed.policy = POLICIES["diverse"]()  # no cache
    feed(resumed, range(SPLIT, N_BATCHES))
    assert_same_learner(whole, resumed)


def test_global_rng_states_are_restored(tmp_path):
    learner = make(CONFIGS["imai-reservoir"])
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    save_checkpoint(tmp_path, 0, learner, {})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    load_checkpoint(tmp_path, 0, learner)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def save_two_ranks(directory, learners, batches):
    for rank, learner in enumerate(learners):
        save_checkpoint(directory, rank, learner, {"batches": batches, "samples_seen": batches * 16}, world_size=2)


@pytest.fixture
def three_checkpoints(tmp_path):
    learners = [make(CONFIGS["imai-reservoir"]) for _ in range(2)]
    dirs = [tmp_path / f"checkpoint_{i}" for i in range(3)]
    for i, d in enumerate(dirs):
        save_two_ranks(d, learners, batches=10 * (i + 1))
    return dirs


def test_latest_complete_picks_the_furthest_stream_position(three_checkpoints):
    shuffled = [three_checkpoints[i] for i in (2, 0, 1)]
    assert all(is_complete(d, 2, verify=True) for d in three_checkpoints)
    assert latest_complete(shuffled, 2) == str(three_checkpoints[2])


def test_a_missing_marker_makes_the_previous_checkpoint_the_latest(three_checkpoints, caplog):
    newest = three_checkpoints[2]
    (newest / "rank1.done").unlink()  # rank 1 died before finishing its save
    assert not is_complete(newest, 2)
    with caplog.at_level(logging.WARNING, logger="streamssl.train.checkpoint"):
        assert latest_complete(three_checkpoints, 2) == str(three_checkpoints[1])
    assert "rank 1 has no rank1.done" in caplog.text


def test_a_truncated_file_makes_the_previous_checkpoint_the_latest(three_checkpoints):
    path = three_checkpoints[2] / "rank0.pt"
    path.write_bytes(path.read_bytes()[:1000])
    assert not is_complete(three_checkpoints[2], 2)
    assert latest_complete(three_checkpoints, 2) == str(three_checkpoints[1])
    with pytest.raises(StreamSSLError, match="corrupt: rank0.pt has 1000 bytes"):
        load_checkpoint(three_checkpoints[2], 0, make(CONFIGS["imai-reservoir"]), world_size=2)


def test_a_same_size_corruption_is_caught_by_the_checksum(three_checkpoints):
    path = three_checkpoints[0] / "rank1.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert is_complete(three_checkpoints[0], 2) and not is_complete(three_checkpoints[0], 2, verify=True)
    with pytest.raises(StreamSSLError, match="SHA-256"):
        load_checkpoint(three_checkpoints[0], 1, make(CONFIGS["imai-reservoir"]), world_size=2)


def test_no_complete_checkpoint_gives_none(tmp_path):
    assert latest_complete([tmp_path / "nothing", tmp_path], 1) is None


def test_world_size_mismatch_is_a_clear_error(three_checkpoints):
    with pytest.raises(StreamSSLError, match="written by 2 workers, this run has 3.*num_workers=2"):
        latest_complete(three_checkpoints, 3)
    with pytest.raises(StreamSSLError, match="written by 2 workers, this run has 1"):
        load_checkpoint(three_checkpoints[0], 0, make(CONFIGS["imai-reservoir"]), world_size=1)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(StreamSSLError, match="no complete checkpoint for rank 0 .*rank0.done missing"):
        load_checkpoint(tmp_path, 0, make(CONFIGS["imai-reservoir"]))


def test_a_different_config_is_refused(tmp_path):
    save_checkpoint(tmp_path, 0, make(CONFIGS["imai-reservoir"]), {})
    other = make(CONFIGS["imai-reservoir"] + ["buffer.size=48"])
    with pytest.raises(StreamSSLError, match="buffer.size=32, this run has 48"):
        load_checkpoint(tmp_path, 0, other)


def test_a_different_protect_new_is_refused(tmp_path):
    save_checkpoint(tmp_path, 0, make(CONFIGS["imai-diverse-protected"]), {})
    with pytest.raises(StreamSSLError, match="buffer.protect_new=1, this run has 0"):
        load_checkpoint(tmp_path, 0, make(CONFIGS["imai-diverse"]))


@dataclass
class Payload:
    command: str


def test_pickled_objects_are_refused_not_unpickled(tmp_path):
    learner = make(CONFIGS["imai-reservoir"])
    save_checkpoint(tmp_path, 0, learner, {})
    torch.save({"loop_state": Payload("rm -rf /")}, tmp_path / "rank0.pt")  # swapped in after the save
    manifest = json.loads((tmp_path / "rank0.done").read_text())
    data = (tmp_path / "rank0.pt").read_bytes()
    manifest["files"]["rank0.pt"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (tmp_path / "rank0.done").write_text(json.dumps(manifest))
    with pytest.raises(StreamSSLError, match="objects other than tensors.*refusing to unpickle"):
        load_checkpoint(tmp_path, 0, learner)


def test_loop_state_with_non_plain_objects_is_refused_at_save(tmp_path):
    learner = make(CONFIGS["imai-reservoir"])
    with pytest.raises(StreamSSLError, match=r"loop_state\['evals'\]\[0\]: a Payload"):
        save_checkpoint(tmp_path, 0, learner, {"evals": [Payload("x")]})
    assert not is_complete(tmp_path, 1)


def test_saving_again_into_a_directory_replaces_the_previous_save(tmp_path):
    learner = make(CONFIGS["imai-reservoir"])
    save_checkpoint(tmp_path, 0, learner, {"samples_seen": 1})
    feed(learner, range(2))
    save_checkpoint(tmp_path, 0, learner, {"samples_seen": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0.done", "rank0.pt"]
    assert load_checkpoint(tmp_path, 0, make(CONFIGS["imai-reservoir"]))["samples_seen"] == 2


def test_the_manifest_records_the_loops_stream_clock(tmp_path):
    learner = make(CONFIGS["imai-reservoir"])  # its buffer has seen nothing: the clock is the loop's
    save_checkpoint(tmp_path, 0, learner, {"batches": 7, "samples_seen": 112})
    assert json.loads((tmp_path / "rank0.done").read_text())["batches"] == 7
    assert load_checkpoint(tmp_path, 0, make(CONFIGS["imai-reservoir"]))["batches"] == 7
