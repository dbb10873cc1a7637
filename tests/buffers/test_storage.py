"""ReplayBuffer: insert/sample/remove bookkeeping, the EMA feature rule, state round trip."""

import io

import pytest
import torch
import torch.nn.functional as F

from streamssl.buffers import FIFO, ReplayBuffer, resize


def _filled(n_batches=3, b=4, capacity=8, dim=5):
    buf = ReplayBuffer(capacity, (3, 2, 2), dim, max_batch=b)
    for step in range(n_batches):
        ids = torch.arange(step * b, (step + 1) * b)
        images = ids.view(-1, 1, 1, 1).expand(-1, 3, 2, 2).to(torch.uint8)
        buf.insert(images, [f"k{i}" for i in ids.tolist()], ids)
        resize(buf, FIFO(), torch.Generator())
    return buf


def _consistent(buf):
    # every row still holds its own sample: image value, label and key agree
    ids = buf.labels
    assert torch.equal(buf.images[:, 0, 0, 0].long(), ids)
    assert buf.keys == [f"k{i}" for i in ids.tolist()]


def test_insert_returns_new_slots_and_ages_entries():
    buf = ReplayBuffer(6, (3, 2, 2), 4, max_batch=3)
    first = buf.insert(torch.zeros(3, 3, 2, 2, dtype=torch.uint8), ["a", "b", "c"], torch.tensor([0, 1, 2]))
    second = buf.insert(torch.ones(2, 3, 2, 2, dtype=torch.uint8), ["d", "e"], torch.tensor([3, 4]))
    assert first.tolist() == [0, 1, 2] and second.tolist() == [3, 4]
    assert buf.lifespan.tolist() == [2, 2, 2, 1, 1]
    assert not buf.seen.any() and len(buf) == 5 and buf.keys == ["a", "b", "c", "d", "e"]
    assert buf.uids.tolist() == [0, 1, 2, 3, 4]


def test_insert_beyond_capacity_plus_batch_is_refused():
    buf = ReplayBuffer(2, (3, 2, 2), 4, max_batch=2)
    buf.insert(torch.zeros(2, 3, 2, 2, dtype=torch.uint8), ["a", "b"], torch.zeros(2, dtype=torch.long))
    buf.insert(torch.zeros(2, 3, 2, 2, dtype=torch.uint8), ["c", "d"], torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="resize first"):
        buf.insert(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), ["e"], torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="uint8"):
        buf.insert(torch.zeros(1, 3, 2, 2), ["e"], torch.zeros(1, dtype=torch.long))


def test_ema_update_rule():
    buf = _filled(1, b=3, dim=4)
    g = torch.Generator().manual_seed(0)
    first, second = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    buf.update_features(torch.tensor([0, 2]), first[[0, 2]], alpha=0.5)
    assert torch.allclose(buf.features[[0, 2]], F.normalize(first[[0, 2]], dim=1))
    assert buf.seen.tolist() == [True, False, True]
    buf.update_features(torch.tensor([2, 1]), second[[2, 1]], alpha=0.8)
    expected = F.normalize(0.8 * F.normalize(first[2], dim=0) + 0.2 * F.normalize(second[2], dim=0), dim=0)
    assert torch.allclose(buf.features[2], expected, atol=1e-6)
    assert torch.allclose(buf.features[1], F.normalize(second[1], dim=0))  # first sight for slot 1
    stamps = buf.feature_stamps.tolist()  # one token per call: 1 and 2 changed together, after 0
    assert stamps[1] == stamps[2] != stamps[0] and min(stamps) >= 0
    with pytest.raises(ValueError, match="distinct"):
        buf.update_features(torch.tensor([0, 0]), second[:2])


def test_sample_is_distinct_and_avoids_excluded_slots():
    buf = _filled(3, b=4, capacity=8)
    g = torch.Generator().manual_seed(1)
    exclude = torch.tensor([1, 5, 6])
    hits = torch.zeros(len(buf))
    for _ in range(300):
        slots = buf.sample(3, g, exclude=exclude)
        assert slots.unique().numel() == 3
        hits[slots] += 1
    assert hits[exclude].sum() == 0
    assert (hits[[0, 2, 3, 4, 7]] > 100).all()  # every eligible slot is drawn (expected 180 each)
    assert sorted(buf.sample(10, g, exclude=exclude).tolist()) == [0, 2, 3, 4, 7]  # fewer if not enough


def test_sample_sparse_regime_draws_uniformly_from_many_slots():
    buf = ReplayBuffer(200, (3, 1, 1), 2, max_batch=200)
    buf.insert(torch.zeros(200, 3, 1, 1, dtype=torch.uint8), [str(i) for i in range(200)],
               torch.zeros(200, dtype=torch.long))
    g = torch.Generator().manual_seed(2)
    hits = torch.zeros(200)
    for _ in range(400):
        slots = buf.sample(5, g, exclude=torch.arange(0, 200, 2))
        assert slots.unique().numel() == 5 and (slots % 2 == 1).all()
        hits[slots] += 1
    assert hits[1::2].min() > 5 and hits[1::2].max() < 40  # expected 20 per odd slot


def test_remove_compacts_and_keeps_rows_together():
    buf = _filled(2, b=4, capacity=8)  # labels 0..7 in slots 0..7
    buf.update_features(torch.tensor([6, 7]), torch.randn(2, 5))
    stamps = dict(zip(buf.labels.tolist(), buf.feature_stamps.tolist()))
    buf.remove(torch.tensor([1, 6, 3]))
    assert len(buf) == 5
    assert sorted(buf.labels.tolist()) == [0, 2, 4, 5, 7]
    assert buf.labels[:1].tolist() == [0] and buf.labels[2].item() == 2  # untouched slots stay put
    _consistent(buf)
    after = dict(zip(buf.labels.tolist(), buf.feature_stamps.tolist()))
    assert after == {k: stamps[k] for k in [0, 2, 4, 5, 7]}
    assert buf.seen.tolist() == [x == 7 for x in buf.labels.tolist()]
    with pytest.raises(ValueError, match="outside"):
        buf.remove(torch.tensor([5]))


def test_resize_fifo_keeps_the_newest():
    buf = _filled(5, b=4, capacity=8)
    assert sorted(buf.labels.tolist()) == list(range(12, 20))
    _consistent(buf)


def test_state_round_trip_through_weights_only_load():
    buf = _filled(3, b=4, capacity=8)
    buf.update_features(torch.tensor([0, 3]), torch.randn(2, 5))
    blob = io.BytesIO()
    torch.save(buf.state_dict(), blob)
    blob.seek(0)
    other = ReplayBuffer(8, (3, 2, 2), 5, max_batch=4)
    other.load_state_dict(torch.load(blob, weights_only=True))
    for name in ("images", "labels", "features", "seen", "lifespan", "uids", "feature_stamps"):
        assert torch.equal(getattr(buf, name), getattr(other, name)), name
    assert other.keys == buf.keys and (other.steps, other.inserted) == (buf.steps, buf.inserted)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(9, (3, 2, 2), 5, max_batch=4).load_state_dict(buf.state_dict())
