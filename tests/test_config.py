import pytest

from streamssl import config as cfg
from streamssl.cli import main
from streamssl.errors import ConfigError

SMOKE = "pipelines/smoke.yaml"


def test_smoke_pipeline_loads_with_presets_and_overrides():
    c = cfg.load(SMOKE, ["learner.k=3", "method.crops=4"])
    assert c.learner.k == 3 and c.method["crops"] == 4
    assert c.learner.schedule == "accv"  # imai's preset
    assert c.method_params().crops == 4


def test_method_presets_apply_but_explicit_values_win():
    c = cfg.load(SMOKE, ["method.name=minred"])
    assert c.learner.schedule == "minred"
    c = cfg.load(SMOKE, ["method.name=minred", "learner.schedule=accv"])
    assert c.learner.schedule == "accv"


def test_int_is_accepted_for_float_and_nested_options_merge():
    c = cfg.load(SMOKE, ["learner.lr=1", "dataset.options.classes=6"])
    assert c.learner.lr == 1.0 and isinstance(c.learner.lr, float)
    assert c.dataset.options["classes"] == 6 and c.dataset.options["size"] == 16


def test_extends_merges_parent(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {(cfg.Path(SMOKE).resolve())}\nlearner:\n  k: 5\n")
    c = cfg.load(child)
    assert c.learner.k == 5 and c.model.backbone == "cnn4"


@pytest.mark.parametrize("override, key", [
    ("learner.kk=3", "learner.kk"),
    ("bogus.x=1", "bogus.x"),
    ("learner.k=three", "learner.k"),
    ("method.crops=1", "method.crops"),
    ("buffer.size=4", "buffer.size"),
    ("learner.k=0", "learner.k"),
    ("method.temperature=0", "method.temperature"),
    ("method.name=nope", "method.name"),
    ("buffer.policy=nope", "buffer.policy"),
    ("stream.kind=nope", "stream.kind"),
])
def test_invalid_configs_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        cfg.load(SMOKE, [override])


def test_key_unused_by_the_method_is_an_error():
    with pytest.raises(ConfigError, match="method.temperature"):
        cfg.load(SMOKE, ["method.name=minred", "method.temperature=0.1"])


def test_cli_rejects_bad_config_with_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", SMOKE, "learner.k=0", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "learner.k" in err[0]
    assert not (tmp_path / "r").exists()  # rejected before any work


def test_every_shipped_pipeline_validates():
    for path in sorted(cfg.Path("pipelines").glob("*.yaml")):
        c = cfg.load(path)
        assert c.method_name in ("imai", "empssl", "minred"), path


def test_per_method_blocks_apply_only_to_the_chosen_method(tmp_path):
    spec = tmp_path / "p.yaml"
    spec.write_text(f"extends: {cfg.Path(SMOKE).resolve()}\n"
                    "per_method:\n  imai: {method: {crops: 3}}\n  minred: {method.pred_dim: 16}\n")
    assert cfg.load(spec).method["crops"] == 3
    assert cfg.load(spec, ["method.name=minred"]).method["pred_dim"] == 16
    assert cfg.load(spec, ["method.crops=5"]).method["crops"] == 5  # the command line still wins
    with pytest.raises(ConfigError, match="per_method.nope"):
        spec.write_text(f"extends: {cfg.Path(SMOKE).resolve()}\nper_method:\n  nope: {{}}\n")
        cfg.load(spec)
