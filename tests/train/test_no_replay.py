import pytest
import torch

from streamssl import resolve
from streamssl.errors import ConfigError
from streamssl.train.learner import Learner

pytestmark = pytest.mark.single_thread


def batch(i, b=16):
    g = torch.Generator().manual_seed(i)
    images = torch.randint(0, 256, (b, 3, 16, 16), generator=g, dtype=torch.uint8)
    return images, [f"k{i}_{j}" for j in range(b)], torch.full((b,), i % 4)


def learner(method, *overrides):
    config = resolve.load("pipelines/smoke.yaml", [f"method.name={method}", "learner.k=3", *overrides])
    return Learner(config, torch.device("cpu"), total_updates=100)


@pytest.mark.parametrize("method", ["simclr", "scale"])
def test_no_replay_trains_on_the_incoming_batch_only_and_keeps_no_memory(method):
    online = learner(method, "learner.replay=false")
    for i in range(3):
        results = online.observe(*batch(i))
        assert [r.batch_size for r in results] == [16, 16, 16]
        assert len(online.buffer) == 0
    assert online.update == 9 and online.buffer.steps == 3


def test_with_replay_the_same_run_replays_b_samples():
    replayed = learner("simclr")
    sizes = [[r.batch_size for r in replayed.observe(*batch(i))] for i in range(3)]
    assert sizes == [[16] * 3, [32] * 3, [32] * 3] and len(replayed.buffer) == 32


def test_no_replay_updates_see_exactly_the_stream_images():
    online = learner("simclr", "learner.replay=false")
    fed = []
    step = online.method.step
    online.method.step = lambda images, gen: (fed.append(images.clone()), step(images, gen))[1]
    for i in range(2):
        online.observe(*batch(i))
    assert len(fed) == 6 and all(torch.equal(x, batch(i // 3)[0]) for i, x in enumerate(fed))


def test_no_replay_needs_the_accv_schedule():
    with pytest.raises(ConfigError, match="learner.replay"):
        resolve.load("pipelines/smoke.yaml", ["method.name=minred", "learner.replay=false"])
