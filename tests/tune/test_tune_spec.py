"""Bad search specs fail with one line naming the key, exit code 2, before any trial starts."""

import pytest
import yaml
from tunespec import SMOKE, write_spec

from streamssl import cli
from streamssl.errors import ConfigError
from streamssl.tune import remote
from streamssl.tune.spec import load_spec

GOOD = {"method.temperature": {"loguniform": [0.05, 0.5]}}


@pytest.mark.parametrize(("space", "search", "named"), [
    ({"learner.kk": {"choice": [1, 2]}}, None, "learner.kk"),
    ({"method.crops": {"choice": []}}, None, "space.method.crops"),
    ({"method.temperature": {"uniform": [0.5, 0.1]}}, None, "space.method.temperature"),
    ({"buffer.ema_alpha": {"uniform": [0.5, 0.5]}}, None, "space.buffer.ema_alpha"),
    ({"buffer.ema_alpha": {"uniform": [0.5, 1.5]}}, None, "buffer.ema_alpha"),
    ({"learner.k": {"normal": [1, 2]}}, None, "space.learner.k"),
    ({"dataset.source": {"choice": ["cifar10"]}}, None, "space.dataset.source"),
    (GOOD, {"metric": "loss"}, "search.metric"),
    (GOOD, {"algorithm": "grid"}, "space.method.temperature"),
    ({"learner.k": {"grid": [1, 2]}}, {"algorithm": "tpe"}, "space.learner.k"),
    (GOOD, {"asha": {"grace": 1.5}}, "search.asha.grace"),
    (GOOD, {"num_samples": 0}, "search.num_samples"),
])
def test_bad_specs_name_the_offending_key(tmp_path, capsys, space, search, named):
    spec = write_spec(tmp_path, space, search)
    assert cli.main(["tune", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err
    assert not (tmp_path / "out").exists()


def test_a_missing_base_pipeline_is_named(tmp_path, capsys):
    spec = write_spec(tmp_path, GOOD, base="no-such.yaml")
    assert cli.main(["tune", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "base: pipeline not found" in err and "no-such.yaml" in err


def test_more_resources_than_the_cluster_has_fails_before_trials(data_root, tmp_path, capsys):
    spec = write_spec(tmp_path, GOOD, overrides={"scaling.num_workers": 64})
    assert cli.main(["tune", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "scaling.num_workers" in err and "the cluster has" in err
    assert not (tmp_path / "out" / "trials").exists()


def test_the_base_is_relative_to_the_spec_and_ranges_parse(tmp_path):
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "p.yaml").write_text(f"extends: {SMOKE}\n")
    spec = load_spec(write_spec(tmp_path, {"learner.k": {"randint": [1, 3]}, **GOOD}, base="pipes/p.yaml"))
    assert spec.base == (tmp_path / "pipes" / "p.yaml").resolve()
    assert [(p.key, p.kind, p.values) for p in spec.space] == [
        ("learner.k", "randint", [1, 3]), ("method.temperature", "loguniform", [0.05, 0.5])]
    assert spec.base_flat["dataset.source"] == "synthetic" and spec.num_samples == 4


def test_remote_job_ships_a_self_contained_spec(tmp_path):
    spec = load_spec(write_spec(tmp_path, GOOD, {"algorithm": "tpe", "num_samples": 3}))
    job = remote.prepare(spec, "/shared/search")
    assert job.entrypoint == "python -m streamssl.cli tune search.yaml --out /shared/search"
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / remote.SPEC_FILE).write_text(job.spec_text)
    (shipped / remote.BASE_FILE).write_text(job.base_text)
    again = load_spec(shipped / remote.SPEC_FILE)
    assert again.space == spec.space and again.base_flat == spec.base_flat
    assert (again.algorithm, again.num_samples, again.asha) == ("tpe", 3, spec.asha)
    with pytest.raises(Exception, match="absolute"):
        remote.prepare(spec, "relative/dir")


def test_spec_yaml_must_be_a_mapping(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_spec(path)
