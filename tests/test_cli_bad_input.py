"""Bad input through the CLI, table-driven: every row exits 2 with exactly one line on stderr that
names the key or argument, no traceback, and nothing written (no --out folder, no prepared data).

Validation runs before any prepare, stream or Ray start, so no row needs Ray or data work; the
stale RAY_ADDRESS row runs in a fresh process, where no Ray is running yet.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamssl.cli import main

SMOKE = "pipelines/smoke.yaml"

# `streamssl run SMOKE <overrides> --out OUT` -> the name the message must start with
RUN_ROWS = [
    # the tracebacks and wrong names
    (["eval.memory_samples=0"], "eval.memory_samples"),
    (["eval.batch_size=0"], "eval.batch_size"),
    (["learner.threads=-1"], "learner.threads"),
    (["model.read_size=0"], "model.read_size"),
    (["stream.samples_per_class=0"], "stream.samples_per_class"),
    (["stream.blend_ratio=2"], "stream.blend_ratio"),
    (["eval.test_samples=-1"], "eval.test_samples"),
    (["dataset.source=imagefolder"], "dataset.options.classes"),  # smoke's options are not imagefolder's
    (["scaling.use_gpu=true", "scaling.num_workers=64"], "scaling.use_gpu"),
    # every other numeric key
    (["seed=-1"], "seed"),
    (["stream.seed=-3"], "stream.seed"),
    (["stream.samples_per_class=[8, 0, 8, 8]"], "stream.samples_per_class"),
    (["stream.samples_per_class=[]"], "stream.samples_per_class"),
    (["stream.samples_per_class=-5"], "stream.samples_per_class"),
    (["stream.samples_per_class=lots"], "stream.samples_per_class"),
    (["stream.blend_ratio=-0.1"], "stream.blend_ratio"),
    (["stream.blend_ratio=.nan"], "stream.blend_ratio"),
    (["stream.classes_per_segment=0"], "stream.classes_per_segment"),
    (["stream.kind=zigzag"], "stream.kind"),
    (["stream.order_by=difficulty_loss"], "stream.order_by"),  # only custom streams order by a column
    (["stream.kind=custom"], "stream.order_by"),
    (["stream.kind=custom", "stream.order_by=-"], "stream.order_by"),
    (["model.image_size=4"], "model.image_size"),
    (["model.backbone=vgg11"], "model.backbone"),
    (["model.proj_dim=0"], "model.proj_dim"),
    (["model.proj_hidden_dim=-5"], "model.proj_hidden_dim"),
    (["learner.threads=0"], "learner.threads"),
    (["learner.lr=.nan"], "learner.lr"),
    (["learner.lr=.inf"], "learner.lr"),
    (["learner.lr=0"], "learner.lr"),
    (["learner.momentum=1.5"], "learner.momentum"),
    (["learner.weight_decay=-1"], "learner.weight_decay"),
    (["learner.lars_eta=0"], "learner.lars_eta"),
    (["learner.stream_batch=0"], "learner.stream_batch"),
    (["learner.k=0"], "learner.k"),
    (["learner.schedule=fast"], "learner.schedule"),
    (["learner.lr_schedule=step"], "learner.lr_schedule"),
    (["learner.bf16=maybe"], "learner.bf16"),
    (["learner.channels_last=2"], "learner.channels_last"),
    (["learner.replay=false", "learner.schedule=minred"], "learner.replay"),
    (["buffer.size=4"], "buffer.size"),
    (["buffer.ema_alpha=1"], "buffer.ema_alpha"),
    (["buffer.policy=lru"], "buffer.policy"),
    (["eval.knn_k=0"], "eval.knn_k"),
    (["eval.knn_k=500"], "eval.knn_k"),  # more neighbours than kNN-memory images
    (["eval.knn_temperature=0"], "eval.knn_temperature"),
    (["eval.points=[0, 2]"], "eval.points"),
    (["eval.points=[true]"], "eval.points"),
    (["eval.points=often"], "eval.points"),
    (["eval.linear_epochs=0"], "eval.linear_epochs"),
    (["eval.linear_lr=-1"], "eval.linear_lr"),
    (["eval.linear_batch_size=0"], "eval.linear_batch_size"),
    (["eval.linear_weight_decay=-0.1"], "eval.linear_weight_decay"),
    (["eval.linear=sometimes"], "eval.linear"),
    (["eval.bn=frozen"], "eval.bn"),
    (["eval.knn_protocol=l1"], "eval.knn_protocol"),
    (["scaling.num_workers=0"], "scaling.num_workers"),
    (["scaling.cpus_per_worker=0"], "scaling.cpus_per_worker"),
    (["scaling.cpus_per_worker=-1"], "scaling.cpus_per_worker"),
    (["dedup.every=-1"], "dedup.every"),
    (["dedup.threshold=2"], "dedup.threshold"),
    (["dedup.max_fraction=1"], "dedup.max_fraction"),
    (["checkpoint.every=-1"], "checkpoint.every"),
    (["checkpoint.keep=0"], "checkpoint.keep"),
    (["checkpoint.max_failures=-2"], "checkpoint.max_failures"),
    (["name="], "name"),
    # methods
    (["method.crops=1"], "method.crops"),
    (["method.temperature=-1"], "method.temperature"),
    (["method.lambda_mcc=-1"], "method.lambda_mcc"),
    (["method.lambda_tcr=.inf"], "method.lambda_tcr"),
    (["method.eps=0"], "method.eps"),
    (["method.crop_scale=[a, b]"], "method.crop_scale"),
    (["method.mcc_variant=x"], "method.mcc_variant"),
    (["method.name=nope"], "method.name"),
    (["method.name=[imai]"], "method.name"),
    (["method.name=minred", "method.crops=4"], "method.crops"),
    (["method.name=minred", "method.pred_dim=0"], "method.pred_dim"),
    (["method.name=byol", "method.tau_base=2"], "method.tau_base"),
    (["method.name=simclr", "method.p_blur=2"], "method.p_blur"),
    (["method.name=scale", "method.thres_ratio=2"], "method.thres_ratio"),
    (["method.name=scale", "learner.schedule=minred"], "learner.schedule"),
    # unknown keys and unparsable overrides
    (["learner.kk=1"], "learner.kk"),
    (["bogus.x=1"], "bogus.x"),
    (["learner=5"], "learner"),
    (["learner.k"], "learner.k"),
    (["learner.k=[1"], "learner.k"),
    # dataset options, checked against the source's
    (["dataset.source=mnist"], "dataset.source"),
    (["dataset.options.classes=0"], "dataset.options.classes"),
    (["dataset.options.size=2"], "dataset.options.size"),
    (["dataset.options.bogus=1"], "dataset.options.bogus"),
    (["dataset.options.shard_size=0"], "dataset.options.shard_size"),
    (["dataset.options.verify=maybe"], "dataset.options.verify"),
    (["dataset.options.test_path=/x"], "dataset.options.test_path"),  # synthetic brings its own
    (["dataset.options=5"], "dataset.options"),
    # data paths that must exist and hold what they should ({...}: made by the `files` fixture)
    (["dataset.dir={empty}"], "dataset.dir"),
    (["dataset.dir={missing}"], "dataset.dir"),
    (["dataset.source=cifar10", "dataset.options={}"], "dataset.path"),
    (["dataset.source=cifar10", "dataset.options={}", "dataset.path={missing}"], "dataset.path"),
    (["dataset.source=cifar10", "dataset.options={}", "dataset.path={empty}"], "dataset.path"),
    (["dataset.source=cifar100", "dataset.options={}", "dataset.path={afile}"], "dataset.path"),
    (["dataset.source=imagefolder", "dataset.options={}", "dataset.path={empty}"], "dataset.path"),
    (["dataset.source=wds", "dataset.options={}", "dataset.path={empty}"], "dataset.path"),
    (["dataset.source=imagefolder", "dataset.options={test_path: {missing}}", "dataset.path={images}"],
     "dataset.options.test_path"),
    (["dataset.path={empty}"], "dataset.path"),  # synthetic takes no input
    (["stream.class_order={missing}"], "stream.class_order"),
    (["dataset.dir={mixed}"], "model.read_size"),  # images of two sizes and no read_size
    (["dataset.dir={mixed}", "model.read_size=16", "stream.label_column=fine"], "stream.label_column"),
    (["dataset.dir={mixed}", "model.read_size=16", "stream.kind=custom", "stream.order_by=difficulty_nope"],
     "stream.order_by"),
]

# files of a `files` fixture name -> their text (bytes: written as is)
PIPELINES = {
    "latin1.yaml": "name: caf\u00e9\n".encode("latin-1"),
    "utf16.yaml": "name: x\n".encode("utf-16"),
    "control.yaml": b"name: a\x07b\n",
    "broken.yaml": "learner: {k: [1\n",
    "list.yaml": "- 1\n- 2\n",
    "extends_list.yaml": "extends: [a.yaml, b.yaml]\n",
    "extends_missing.yaml": "extends: no-such.yaml\n",
    "circular.yaml": "extends: circular.yaml\n",
    "typo_other_method.yaml": "extends: {smoke}\nper_method:\n  minred: {learner: {kk: 1}}\n",
    "key_other_method_lacks.yaml": "extends: {smoke}\nper_method:\n  minred: {method: {crops: 4}}\n",
    "range_other_method.yaml": "extends: {smoke}\nper_method:\n  scale: {learner: {k: 0}}\n",
    "unknown_method_block.yaml": "extends: {smoke}\nper_method:\n  nope: {}\n",
    "per_method_scalar.yaml": "extends: {smoke}\nper_method: 5\n",
    "block_scalar.yaml": "extends: {smoke}\nper_method:\n  imai: 3\n",
    "block_sets_name.yaml": "extends: {smoke}\nper_method:\n  empssl: {method: {name: imai}}\n",
    "typo_chosen_method.yaml": "extends: {smoke}\nper_method:\n  imai: {method: {cropz: 4}}\n",
    "demo_typo_other_method.yaml": "base: typo_other_method.yaml\nmethods: [imai]\nstreams: [seq]\nseeds: [0]\n",
    "demo_unknown_stream.yaml": "base: {smoke}\nmethods: [imai]\nstreams: [seq, zigzag]\nseeds: [0]\n",
    "demo_unknown_method.yaml": "base: {smoke}\nmethods: [imai, nope]\nstreams: [seq]\nseeds: [0]\n",
    "spec_latin1.yaml": "base: caf\u00e9.yaml\n".encode("latin-1"),
    "spec_bad_override.yaml": "base: {smoke}\noverrides: {eval.batch_size: 0}\n"
                              "space: {learner.k: {choice: [1, 2]}}\n",
}

# `streamssl run FILE --out OUT` -> name in the message
FILE_ROWS = [
    ("latin1.yaml", "latin1.yaml: not UTF-8"),
    ("utf16.yaml", "utf16.yaml: not UTF-8"),
    ("control.yaml", "control.yaml: not valid YAML"),
    ("broken.yaml", "broken.yaml: not valid YAML"),
    ("list.yaml", "list.yaml: a pipeline must be a mapping"),
    ("extends_list.yaml", "extends"),
    ("extends_missing.yaml", "no-such.yaml"),
    ("circular.yaml", "circular"),
    ("typo_other_method.yaml", "per_method.minred: learner.kk"),
    ("key_other_method_lacks.yaml", "per_method.minred: method.crops"),
    ("range_other_method.yaml", "per_method.scale: learner.k"),
    ("unknown_method_block.yaml", "per_method.nope"),
    ("per_method_scalar.yaml", "per_method"),
    ("block_scalar.yaml", "per_method.imai"),
    ("block_sets_name.yaml", "per_method.empssl"),
    ("typo_chosen_method.yaml", "method.cropz"),
    ("missing.yaml", "pipeline file not found"),
]

# any command: argv ({...}: fixture paths, {out}: a folder that must not appear) -> name in the message
COMMAND_ROWS = [
    ([], "COMMAND"),
    (["nope"], "COMMAND"),
    (["run"], "PIPELINE"),
    (["run", SMOKE, "--out", "{afile}"], "--out"),
    (["run", SMOKE, "--out", "{afile}/run"], "--out"),
    (["run", "--resume", "{missing}"], "--resume"),
    (["report", "{empty}", "--out", "{afile}"], "--out"),
    (["prepare", "synthetic", "--out", "{afile}"], "--out"),
    (["prepare", "synthetic", "--out", "{out}", "--classes", "0"], "--classes"),
    (["prepare", "synthetic", "--out", "{out}", "--seed", "-1"], "--seed"),
    (["prepare", "synthetic", "--out", "{out}", "--size", "big"], "--size"),
    (["prepare", "synthetic", "--out", "{out}", "--shard-size", "0"], "--shard-size"),
    (["prepare", "nope", "--out", "{out}"], "SOURCE"),
    (["prepare", "cifar10", "{empty}", "--out", "{out}"], "PATH"),
    (["prepare", "cifar10", "--out", "{out}"], "PATH"),
    (["prepare", "imagefolder", "{afile}", "--out", "{out}"], "PATH"),
    (["prepare", "wds", "{empty}", "--out", "{out}"], "PATH"),
    (["prepare", "imagefolder", "{images}", "--test-path", "{missing}", "--out", "{out}"], "--test-path"),
    (["stream", "{mixed}", "--kind", "seq", "--out", "{afile}"], "--out"),
    (["stream", "{missing}", "--kind", "seq", "--out", "{out}"], "DATASET_DIR"),
    (["stream", "{mixed}", "--kind", "zigzag", "--out", "{out}"], "--kind"),
    (["stream", "{mixed}", "--kind", "seq", "--seed", "-1", "--out", "{out}"], "--seed"),
    (["stream", "{mixed}", "--kind", "seq", "--shard-size", "0", "--out", "{out}"], "--shard-size"),
    (["stream", "{mixed}", "--kind", "seq-bl", "--blend-ratio", "nan", "--out", "{out}"], "--blend-ratio"),
    (["stream", "{mixed}", "--kind", "seq", "--samples-per-class", "0", "--out", "{out}"], "--samples-per-class"),
    (["stream", "{mixed}", "--kind", "seq", "--classes-per-segment", "0", "--out", "{out}"],
     "--classes-per-segment"),
    (["score", "{mixed}", "--by", "loss", "--threads", "-2"], "--threads"),
    (["score", "{mixed}", "--by", "loss", "--threads", "0"], "--threads"),
    (["score", "{mixed}", "--by", "loss", "--seed", "-1"], "--seed"),
    (["score", "{mixed}", "--by", "nope"], "--by"),
    (["score", "{missing}", "--by", "loss"], "DATASET_DIR"),
    (["score", "{mixed}", "--by", "class-distance", "--epochs", "3"], "--epochs"),
    (["demo", "--out", "{afile}"], "--out"),
    (["demo", "--spec", "{demo_unknown_method.yaml}", "--out", "{out}"], "methods"),
    (["demo", "--spec", "{demo_unknown_stream.yaml}", "--out", "{out}"], "streams"),
    (["demo", "--spec", "{demo_typo_other_method.yaml}", "--out", "{out}"], "per_method.minred"),
    (["demo", "eval.memory_samples=0", "--out", "{out}"], "eval.memory_samples"),
    (["tune", "{spec_latin1.yaml}", "--out", "{out}"], "spec_latin1.yaml: not UTF-8"),
    (["tune", "{spec_bad_override.yaml}", "--out", "{out}"], "eval.batch_size"),
    (["tune", "tune/smoke.yaml", "--out", "{afile}"], "--out"),
    (["submit", SMOKE, "eval.batch_size=0", "--address", "http://127.0.0.1:9"], "eval.batch_size"),
    (["submit", "{latin1.yaml}", "--address", "http://127.0.0.1:9"], "latin1.yaml: not UTF-8"),
    (["bench", "buffer", "--threads", "-1"], "--threads"),
    (["bench", "augment", "--threads", "1", "0"], "--threads"),
    (["bench", "step", "--threads", "-3"], "--threads"),
    (["bench", "ddp", "--threads", "0"], "--threads"),
    (["bench", "scale", "--out", "{afile}"], "--out"),
    (["jobs", "status"], "ID"),
]


def _image(path: Path, size: tuple[int, int], value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Paths the rows refer to: an empty folder, a file, a missing path, pipelines, datasets."""
    from streamssl.ingest import prepare

    root = tmp_path_factory.mktemp("bad_input")
    paths = {"empty": root / "empty", "afile": root / "afile.txt", "missing": root / "missing",
             "images": root / "images", "mixed": root / "mixed", "smoke": Path(SMOKE).resolve()}
    paths["empty"].mkdir()
    paths["afile"].write_text("not a folder\n")
    for i, (cls, size) in enumerate([("a", (16, 16)), ("a", (16, 16)), ("b", (24, 20)), ("b", (24, 20))]):
        _image(paths["images"] / cls / f"{i}.png", size, 40 * i)
    prepare("imagefolder", paths["images"], paths["mixed"], parallel=False, progress=False)
    for name, text in PIPELINES.items():
        data = text if isinstance(text, bytes) else text.replace("{smoke}", str(paths["smoke"])).encode()
        (root / name).write_bytes(data)
        paths[name] = root / name
    paths["missing.yaml"] = root / "missing.yaml"
    return {name: str(path) for name, path in paths.items()}


@pytest.fixture
def quiet_data_root(tmp_path, monkeypatch) -> Path:
    """STREAMSSL_DATA for the row: it must stay empty (no dataset prepared, no stream built)."""
    root = tmp_path / "data"
    monkeypatch.setenv("STREAMSSL_DATA", str(root))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return root


def _fill(args: list[str], files: dict[str, str], out: Path) -> list[str]:
    filled = []
    for arg in args:
        for name, path in {**files, "out": str(out)}.items():
            arg = arg.replace("{" + name + "}", path)
        filled.append(arg)
    return filled


def _assert_one_line(code: int, err: str, name: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, lines
    assert name in lines[0], lines[0]


def _assert_nothing_written(out: Path, data_root: Path, files: dict[str, str]) -> None:
    assert not out.exists()
    assert not data_root.exists() or not any(data_root.iterdir())
    assert Path(files["afile"]).read_text() == "not a folder\n" and not any(Path(files["empty"]).iterdir())


@pytest.mark.parametrize("overrides, name", RUN_ROWS, ids=[" ".join(o) for o, _ in RUN_ROWS])
def test_bad_pipeline_keys(overrides, name, files, tmp_path, quiet_data_root, capsys):
    out = tmp_path / "run"
    code = main(["run", SMOKE, *_fill(overrides, files, out), "--out", str(out)])
    err = capsys.readouterr().err
    _assert_one_line(code, err, name)
    assert err.split(": error: ", 1)[1].startswith(name), err  # the key leads the message
    _assert_nothing_written(out, quiet_data_root, files)


@pytest.mark.parametrize("pipeline, name", FILE_ROWS, ids=[p for p, _ in FILE_ROWS])
def test_bad_pipeline_files(pipeline, name, files, tmp_path, quiet_data_root, capsys):
    out = tmp_path / "run"
    code = main(["run", files[pipeline], "--out", str(out)])
    _assert_one_line(code, capsys.readouterr().err, name)
    _assert_nothing_written(out, quiet_data_root, files)


@pytest.mark.parametrize("argv, name", COMMAND_ROWS, ids=[" ".join(a) or "no-command" for a, _ in COMMAND_ROWS])
def test_bad_command_arguments(argv, name, files, tmp_path, quiet_data_root, capsys):
    out = tmp_path / "out"
    code = main(_fill(argv, files, out))
    _assert_one_line(code, capsys.readouterr().err, name)
    _assert_nothing_written(out, quiet_data_root, files)


def test_a_stale_ray_address_fails_in_seconds_naming_the_variable(tmp_path):
    """Today's hang: ray.init retries a dead address; a fresh process, so no Ray is running yet."""
    with socket.socket() as probe:  # a local port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}", "STREAMSSL_DATA": str(tmp_path / "data"),
           "PYTHONPATH": os.pathsep.join(p for p in [str(Path("platform").resolve()), os.environ.get("PYTHONPATH")]
                                         if p)}
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "streamssl.cli", "run", SMOKE, "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    _assert_one_line(done.returncode, done.stderr, f"RAY_ADDRESS=127.0.0.1:{port}")
    assert not out.exists() and not (tmp_path / "data").exists()
