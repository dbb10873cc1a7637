import json

import pytest
import torch

from streamssl import resolve
from streamssl.errors import ConfigError, TrainingError
from streamssl.methods import method_params
from streamssl.resolve import build_method
from streamssl.train.learner import Learner

pytestmark = pytest.mark.single_thread


def smoke(*overrides):
    return resolve.load("pipelines/smoke.yaml", ["method.name=scale", *overrides])


def make_method(*overrides):
    config = smoke(*overrides)
    torch.manual_seed(0)
    return build_method(config)


def images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)


def record_inputs(method):
    seen = []
    method.backbone.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    return seen


def test_stream_views_are_fixed_for_the_batch_and_memory_views_are_fresh():
    method = make_method()
    gen = torch.Generator().manual_seed(0)
    stream, memory = images(4, 1), images(3, 2)
    method.begin_batch(stream, gen)
    seen = record_inputs(method)
    batch = torch.cat([stream, memory])
    method.step(batch, gen)
    method.step(batch, gen)
    first, second = (x.view(2, 7, 3, 16, 16) for x in seen)  # backbone inputs: (2 views x 7 rows)
    assert torch.equal(first[:, :4], second[:, :4])  # the same two stream views at every step
    assert not torch.allclose(first[:, 4:], second[:, 4:])  # memory re-augmented at every step


def test_step_rejects_rows_that_are_not_the_stream_batch():
    method = make_method()
    gen = torch.Generator().manual_seed(0)
    method.begin_batch(images(4, 1), gen)
    with pytest.raises(TrainingError, match="stream batch"):
        method.step(images(6, 3), gen)


def test_distill_weight_is_fixed_at_the_first_step_with_ird_from_the_mean_losses():
    method = make_method()
    gen = torch.Generator().manual_seed(0)
    bare = method.step(images(6, 1), gen)  # no past model yet: IRD 0, w not fixed
    assert bare.parts["ird"] == 0.0 and method.ird_weight.item() == 0.0
    stream = images(6, 2)
    method.begin_batch(stream, gen)
    out = method.step(stream, gen)
    assert out.parts["ird"] > 0
    expected = (bare.parts["psc"] + out.parts["psc"]) / out.parts["ird"] * 0.15  # ratio of the running means
    assert method.ird_weight.item() == pytest.approx(expected, rel=1e-5)
    assert out.loss.item() == pytest.approx(out.parts["psc"] + expected * out.parts["ird"], rel=1e-5)
    method.step(stream, gen)
    assert method.ird_weight.item() == pytest.approx(expected, rel=1e-5)  # frozen afterwards


def test_state_dict_holds_w_but_not_the_past_snapshot():
    method = make_method()
    gen = torch.Generator().manual_seed(0)
    stream = images(6, 2)
    method.begin_batch(stream, gen)
    method.step(stream, gen)
    state = method.state_dict()
    assert not any(key.startswith("_past") for key in state) and "ird_weight" in state
    fresh = make_method()
    fresh.load_state_dict(state)
    assert fresh.ird_weight.item() == method.ird_weight.item() > 0
    assert len(list(fresh.parameters())) == len(list(method.parameters()))


def test_past_model_is_a_frozen_snapshot():
    method = make_method()
    gen = torch.Generator().manual_seed(0)
    stream = images(6, 2)
    method.begin_batch(stream, gen)
    past = method._past[0]
    before = [p.clone() for p in past.parameters()]
    opt = torch.optim.SGD(method.parameters(), lr=0.5)
    method.step(stream, gen).loss.backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, past.parameters()))
    assert not past.training and not any(p.requires_grad for p in past.parameters())
    assert not torch.equal(before[0], method.backbone.state_dict()[next(iter(method.backbone.state_dict()))])


def test_x255_quirk_inverts_the_memory_images():
    quirk, plain = make_method("method.memory_x255_quirk=true"), make_method()
    stream, memory = images(3, 1), images(3, 2)
    views = []
    for method, mem in ((quirk, memory), (plain, ((256 - memory.int()) % 256).to(torch.uint8))):
        gen = torch.Generator().manual_seed(5)
        method.begin_batch(stream, gen)
        views.append(method._views(torch.cat([stream, mem]), gen)[0])
    assert torch.equal(views[0], views[1])


@pytest.mark.parametrize("train_mode", [False, True])
def test_memory_embeddings_leave_bn_statistics_alone_in_eval_mode(train_mode):
    method = make_method(f"method.memory_train_mode={str(train_mode).lower()}")
    stats = [b.clone() for b in method.backbone.buffers()]
    emb = method.memory_embeddings(images(5, 1))
    assert emb.shape == (5, method.backbone_dim) and method.training
    changed = any(not torch.equal(a, b) for a, b in zip(stats, method.backbone.buffers()))
    assert changed == train_mode


def test_presets_set_scale_defaults_and_explicit_values_win():
    c = resolve.load(None, ["method.name=scale"])
    lc = c.learner
    assert (lc.stream_batch, lc.k, lc.lr, lc.momentum, lc.weight_decay, lc.lars, lc.lr_schedule) == (
        128, 20, 0.03, 0.9, 1e-4, False, "constant")
    assert (c.buffer.size, c.buffer.policy, c.model.backbone, method_params(c.method).thres_ratio) == (
        256, "psa", "resnet18", 0.1)
    c = resolve.load(None, ["method.name=scale", "learner.k=5", "learner.lars=true", "model.backbone=resnet18_cifar"])
    assert (c.learner.k, c.learner.lars, c.model.backbone) == (5, True, "resnet18_cifar")
    assert smoke().learner.k == 1 and smoke().model.backbone == "cnn4"  # the pipeline file is explicit too


def test_iid_streams_get_the_iid_threshold_unless_set():
    assert method_params(resolve.load(None, ["method.name=scale", "stream.kind=iid"]).method).thres_ratio == 0.3
    explicit = resolve.load(None, ["method.name=scale", "stream.kind=iid", "method.thres_ratio=0.2"])
    assert method_params(explicit.method).thres_ratio == 0.2
    assert resolve.load(None, ["method.name=imai", "stream.kind=iid"]).method == {"name": "imai"}


@pytest.mark.parametrize("override, key", [("learner.schedule=minred", "learner.schedule"),
                                           ("method.thres_ratio=2", "method.thres_ratio"),
                                           ("method.past_temperature=0", "method.past_temperature")])
def test_bad_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        smoke(override)


def test_learner_refreshes_psa_embeddings_and_calls_begin_batch_once_per_batch():
    config = smoke("learner.k=2")
    learner = Learner(config, torch.device("cpu"), total_updates=10)
    calls = []
    begin = learner.method.begin_batch
    learner.method.begin_batch = lambda imgs, gen: (calls.append(imgs.shape[0]), begin(imgs, gen))
    for i in range(3):
        results = learner.observe(images(16, i), [f"k{i}_{j}" for j in range(16)], torch.full((16,), i))
        assert [r.batch_size for r in results] == ([16, 16] if i == 0 else [32, 32])
    assert calls == [16, 16, 16] and len(learner.buffer) == 32
    assert learner.buffer.features.shape == (32, learner.method.backbone_dim)
    # the kept entries carry the embeddings the current model gives them (computed before the resize)
    torch.testing.assert_close(learner.buffer.features, learner.method.memory_embeddings(learner.buffer.images))



@pytest.mark.ray
def test_streamssl_run_on_an_iid_stream(data_root, tmp_path):
    from streamssl.cli import main

    run_dir = tmp_path / "iid"
    assert main(["run", "pipelines/smoke.yaml", "method.name=scale", "stream.kind=iid", "--out", str(run_dir),
                 "--no-progress"]) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["method"] == "scale" and info["updates"] == 8


@pytest.mark.ray
def test_interrupted_then_resumed_run_matches_an_uninterrupted_one(data_root, tmp_path):
    import shutil

    import pandas as pd

    from streamssl.pipeline import run_pipeline

    config = smoke("learner.threads=1", "learner.k=2", "eval.points=[0,0.5,1]", "checkpoint.every=3",
                   "checkpoint.keep=10", "eval.linear=off")
    full, cut = tmp_path / "full", tmp_path / "cut"
    run_pipeline(config, full, progress=False, trainer="local")
    saved = sorted((full / "checkpoints").glob("pos-*"))
    assert len(saved) >= 2
    shutil.copytree(full, cut, ignore=shutil.ignore_patterns("buffer_keys*", "model.pt", "report.md"))
    for later in sorted((cut / "checkpoints").glob("pos-*"))[1:]:
        shutil.rmtree(later)
    info = json.loads((cut / "run.json").read_text())
    (cut / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))  # as a stopped run left it
    assert run_pipeline(config, cut, progress=False, trainer="local", resume=True)["status"] == "completed"

    def final(run_dir):
        metrics = pd.read_parquet(run_dir / "metrics.parquet")
        losses = metrics[metrics.metric == "train/loss"].sort_values("update").value.tolist()
        keys = json.loads((run_dir / "buffer_keys.rank0.json").read_text())
        return losses, keys, torch.load(run_dir / "model.pt")["method"]["ird_weight"].item()

    (loss_full, keys_full, w_full), (loss_cut, keys_cut, w_cut) = final(full), final(cut)
    assert loss_cut == loss_full and keys_cut == keys_full and w_cut == w_full > 0
