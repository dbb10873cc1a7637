"""Experiment specs: bad ones fail with one line naming the key, exit 2, before any work; the run
matrix, the run configs, the seed's reach and the --address payload."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from streamssl import cli
from streamssl.experiment import remote
from streamssl.experiment.spec import expand, load_spec, run_config

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "pipelines" / "smoke.yaml"
GOOD = {"base": str(SMOKE), "methods": ["empssl", "imai"], "streams": ["seq"], "seeds": [0, 1],
        "overrides": {"method.crops": 2}, "reference": "empssl"}


def write(folder: Path, **changes) -> Path:
    spec = {**GOOD, **changes}
    spec = {k: v for k, v in spec.items() if v is not None}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize(("changes", "named"), [
    ({"method": ["imai"]}, "method: unknown key"),
    ({"base": None}, "base:"),
    ({"base": "no-such.yaml"}, "base: pipeline not found"),
    ({"methods": []}, "methods: must be a non-empty list"),
    ({"methods": ["imai", "nope"]}, "methods: unknown method 'nope'"),
    ({"methods": ["imai", "imai"]}, "methods: lists a value twice"),
    ({"streams": ["seq", "zigzag"]}, "streams: zigzag: stream.kind"),
    ({"seeds": [0, 0]}, "seeds:"),
    ({"seeds": [0, "one"]}, "seeds:"),
    ({"seeds": [-1]}, "seeds:"),
    ({"overrides": {"learner.k": "many"}}, "overrides: learner.k"),
    ({"overrides": {"learner.kk": 1}}, "overrides: learner.kk"),
    ({"overrides": {"seed": 3}}, "overrides.seed: set by the spec's `seeds`"),
    ({"overrides": {"method": {"name": "imai"}}}, "overrides.method.name"),
    ({"overrides": [1, 2]}, "overrides: must be a mapping"),
    ({"grid": {"method.crops": [2, "many"]}}, "grid.method.crops: method.crops"),
    ({"grid": {"method.temperature": [0.1]}}, "grid.method.temperature"),  # empssl takes no temperature
    ({"grid": {"learner.k": []}}, "grid.learner.k: must be a non-empty list"),
    ({"grid": {"dataset.options": [{"classes": 2}]}}, "grid.dataset.options: the dataset cannot vary"),
    ({"grid": {"stream.kind": ["iid"]}}, "grid.stream.kind: set by the spec's `streams`"),
    ({"grid": {"learner.stream_batch": [16, 32], "buffer.size": [16]}},  # each fine alone; safe_dump sorts keys
     "grid: cell empssl-seq-size16-stream_batch32: buffer.size"),
    ({"reference": "byol"}, "reference: 'byol' is not one of methods"),
    ({"max_concurrent": 0}, "max_concurrent: must be an integer >= 1"),
])
def test_bad_specs_name_the_key_exit_2_and_leave_no_dir(tmp_path, capsys, changes, named):
    out = tmp_path / "out"
    assert cli.main(["experiment", str(write(tmp_path, **changes)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("streamssl experiment: error: ") and named in err, err
    assert not out.exists()


def test_a_spec_that_is_not_a_mapping(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text("- base\n")
    assert cli.main(["experiment", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "must be a mapping" in capsys.readouterr().err


def test_matrix_names_and_run_configs(tmp_path):
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "p.yaml").write_text(f"extends: {SMOKE}\n")
    spec = load_spec(write(tmp_path, base="pipes/p.yaml", streams=["seq", "seq-bl"], max_concurrent=3,
                           grid={"learner.k": [1, 2], "method.lambda_tcr": [0.5]}))
    assert spec.base == (tmp_path / "pipes" / "p.yaml").resolve() and spec.max_concurrent == 3
    runs = expand(spec)
    assert len(runs) == 2 * 2 * 2 * 2  # methods x streams x learner.k x seeds
    assert [r.name for r in runs[:4]] == ["empssl-seq-k1-lambda_tcr0.5-s0", "empssl-seq-k1-lambda_tcr0.5-s1",
                                         "empssl-seq-k2-lambda_tcr0.5-s0", "empssl-seq-k2-lambda_tcr0.5-s1"]
    config = run_config(spec, runs[-1], {"dataset.dir": "/data/x"})
    assert (config.method_name, config.stream.kind, config.seed, config.learner.k) == ("imai", "seq-bl", 1, 2)
    assert config.method["crops"] == 2 and config.method["lambda_tcr"] == 0.5  # override + grid
    assert config.dataset.dir == "/data/x" and config.stream.seed is None  # the stream follows the run seed


def test_the_seed_reaches_init_augmentation_replay_and_stream_order(tmp_path):
    """Two seeds of one cell differ in every random source; a key that pins one keeps it fixed."""
    from streamssl.pipeline import stream_args
    from streamssl.streams.plan import plan_stream
    from streamssl.train.learner import Learner

    spec = load_spec(write(tmp_path))
    cell = expand(spec)[:2]  # empssl-seq, seeds 0 and 1
    configs = [run_config(spec, run) for run in cell]
    learners = [Learner(c, torch.device("cpu"), total_updates=10) for c in configs]
    weights = [torch.cat([p.detach().flatten() for p in lr.method.parameters()]) for lr in learners]
    assert not torch.equal(weights[0], weights[1])  # model init
    draws = [torch.rand(8, generator=lr.aug_gen) for lr in learners]
    assert not torch.equal(*draws)  # augmentation
    draws = [torch.randperm(64, generator=lr.buffer_gen) for lr in learners]
    assert not torch.equal(*draws)  # replay draws
    labels = np.repeat(np.arange(4), 50)
    plans = [plan_stream(labels, "seq", **{k: v for k, v in stream_args(c).items()
                                            if k in ("seed", "samples_per_class")}) for c in configs]
    assert [stream_args(c)["seed"] for c in configs] == [0, 1]
    assert np.array_equal(labels[plans[0]], labels[plans[1]])  # same class order ...
    assert not np.array_equal(plans[0], plans[1])  # ... different samples within each class
    pinned = load_spec(write(tmp_path, overrides={"method.crops": 2, "stream.seed": 5}))
    assert {stream_args(run_config(pinned, run))["seed"] for run in expand(pinned)} == {5}


def test_remote_job_ships_a_self_contained_spec(tmp_path):
    spec = load_spec(write(tmp_path, grid={"learner.k": [1, 2]}))
    job = remote.prepare(spec, "/shared/exp", resume=True)
    assert job.entrypoint == ("python -m streamssl.cli experiment experiment.yaml --out /shared/exp "
                              "--no-progress --resume")
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / remote.SPEC_FILE).write_text(job.spec_text)
    (shipped / remote.BASE_FILE).write_text(job.base_text)
    again = load_spec(shipped / remote.SPEC_FILE)
    assert again.matrix() == spec.matrix()  # what --resume compares: the same experiment
    assert [r.name for r in expand(again)] == [r.name for r in expand(spec)]
    assert run_config(again, expand(again)[3]) == run_config(spec, expand(spec)[3])
    with pytest.raises(Exception, match="absolute"):
        remote.prepare(spec, "relative/dir")
