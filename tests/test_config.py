import ast
import os
import subprocess
import sys

import pytest

from streamssl import config as cfg
from streamssl import resolve
from streamssl.cli import main
from streamssl.errors import ConfigError
from streamssl.methods import method_params

SMOKE = "pipelines/smoke.yaml"
PLATFORM = cfg.Path(__file__).resolve().parents[1] / "platform"


def test_smoke_pipeline_loads_with_presets_and_overrides():
    c = resolve.load(SMOKE, ["learner.k=3", "method.crops=4"])
    assert c.learner.k == 3 and c.method["crops"] == 4
    assert c.learner.schedule == "accv"  # imai's preset
    assert method_params(c.method).crops == 4


def test_method_presets_apply_but_explicit_values_win():
    c = resolve.load(SMOKE, ["method.name=minred"])
    assert c.learner.schedule == "minred"
    c = resolve.load(SMOKE, ["method.name=minred", "learner.schedule=accv"])
    assert c.learner.schedule == "accv"


def test_int_is_accepted_for_float_and_nested_options_merge():
    c = resolve.load(SMOKE, ["learner.lr=1", "dataset.options.classes=6"])
    assert c.learner.lr == 1.0 and isinstance(c.learner.lr, float)
    assert c.dataset.options["classes"] == 6 and c.dataset.options["size"] == 16


def test_extends_merges_parent(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {(cfg.Path(SMOKE).resolve())}\nlearner:\n  k: 5\n")
    c = resolve.load(child)
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
        resolve.load(SMOKE, [override])


def test_key_unused_by_the_method_is_an_error():
    with pytest.raises(ConfigError, match="method.temperature"):
        resolve.load(SMOKE, ["method.name=minred", "method.temperature=0.1"])


def test_cli_rejects_bad_config_with_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", SMOKE, "learner.k=0", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "learner.k" in err[0]
    assert not (tmp_path / "r").exists()  # rejected before any work


def test_every_shipped_pipeline_validates():
    for path in sorted(cfg.Path("pipelines").glob("*.yaml")):
        c = resolve.load(path)
        assert c.method_name in ("imai", "empssl", "minred"), path


def test_per_method_blocks_apply_only_to_the_chosen_method(tmp_path):
    spec = tmp_path / "p.yaml"
    spec.write_text(f"extends: {cfg.Path(SMOKE).resolve()}\n"
                    "per_method:\n  imai: {method: {crops: 3}}\n  minred: {method.pred_dim: 16}\n")
    assert resolve.load(spec).method["crops"] == 3
    assert resolve.load(spec, ["method.name=minred"]).method["pred_dim"] == 16
    assert resolve.load(spec, ["method.crops=5"]).method["crops"] == 5  # the command line still wins
    with pytest.raises(ConfigError, match="per_method.nope"):
        spec.write_text(f"extends: {cfg.Path(SMOKE).resolve()}\nper_method:\n  nope: {{}}\n")
        resolve.load(spec)


def test_every_method_block_is_validated_as_that_method_would_resolve_it(tmp_path):
    spec = tmp_path / "p.yaml"
    spec.write_text(f"extends: {cfg.Path(SMOKE).resolve()}\nper_method:\n  minred: {{learner: {{k: 12}}}}\n"
                    "  scale: {model: {proj_hidden_dim: null, proj_dim: 64}}\n")
    assert resolve.load(spec).method_name == "imai"  # valid blocks of other methods pass
    spec.write_text(f"extends: {cfg.Path(SMOKE).resolve()}\nper_method:\n  minred: {{eval: {{batch_size: 0}}}}\n")
    with pytest.raises(ConfigError, match=r"^per_method\.minred: eval\.batch_size: must be >= 1"):
        resolve.load(spec)
    # a method-specific key given for the chosen method does not count against the other blocks
    spec.write_text(f"extends: {cfg.Path(SMOKE).resolve()}\nmethod: {{crops: 3}}\n"
                    "per_method:\n  minred: {learner: {k: 4}}\n")
    assert resolve.load(spec).method["crops"] == 3


def test_renamed_maps_the_library_argument_to_the_callers_name():
    from streamssl.errors import DataError, renamed

    with pytest.raises(ConfigError, match=r"^stream\.blend_ratio: must be in"):
        with renamed({"blend_ratio": "stream.blend_ratio"}):
            raise ConfigError("blend_ratio: must be in [0, 1], got 2")
    with pytest.raises(DataError, match=r"^/data/x: unchanged"):  # other names and the class are kept
        with renamed(lambda name: None):
            raise DataError("/data/x: unchanged")


def test_ray_address_check_passes_a_listening_port_and_names_the_variable_otherwise(monkeypatch):
    import socket

    from streamssl.ray_setup import check_ray_address

    monkeypatch.setattr("streamssl.ray_setup._ray_running", lambda: False)  # a session Ray skips the check
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}", f"http://localhost:{port}"):
            check_ray_address(address, "--address")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")  # closed now
    with pytest.raises(ConfigError, match=rf"^RAY_ADDRESS=127\.0\.0\.1:{port}: no Ray cluster answers"):
        check_ray_address()
    with pytest.raises(ConfigError, match=r"^--address=host:port: not a Ray address"):
        check_ray_address("host:port", "--address")
    check_ray_address("local", "--address")  # a private local Ray: nothing to reach


def test_buffer_params_are_checked_against_the_chosen_policy():
    c = resolve.load(SMOKE, ["buffer.policy=diverse", "buffer.params.neighbours=3"])
    assert c.buffer.params == {"neighbours": 3}
    with pytest.raises(ConfigError, match=r"^buffer\.params\.neighbours: must be >= 1, got 0"):
        resolve.load(SMOKE, ["buffer.params.neighbours=0"])
    with pytest.raises(ConfigError, match=r"^buffer\.params\.rebuild_fraction: expected float, got 'lots'"):
        resolve.load(SMOKE, ["buffer.params.rebuild_fraction=lots"])
    with pytest.raises(ConfigError, match=r"^buffer\.params\.neighbours: not a parameter of policy 'fifo' "
                                          r"\(it takes: none\)"):
        resolve.load(SMOKE, ["buffer.policy=fifo", "buffer.params.neighbours=3"])
    with pytest.raises(ConfigError, match=r"^buffer\.params: expected dict"):
        resolve.load(SMOKE, ["buffer.params=3"])


def test_the_schema_module_imports_no_registry():
    code = ("import sys, streamssl.config; "
            "print(sorted(m for m in sys.modules if m.startswith('streamssl')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(PLATFORM)}).stdout
    assert ast.literal_eval(loaded) == ["streamssl", "streamssl.config", "streamssl.errors"]
