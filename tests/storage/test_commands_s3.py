"""experiment (and its --resume), export, eval, columns, score and a custom stream with every path an
s3:// URI on the loopback server, and the wiring of a search's Tune storage into the bucket.

One dataset is prepared in the module's bucket and serves every test; the module runs in an empty
working directory that holds nothing but the cache afterwards.
"""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from streamssl import fsio
from streamssl.cli import main
from streamssl.tune.search import build_tuner
from streamssl.tune.spec import load_spec
from streamssl.tune.trial import STARTS_FILE, record_start

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
MICRO = {"method.crops": 2, "learner.threads": 1, "eval.points": [0, 1], "eval.linear": "off",
         "eval.linear_epochs": 5}
NAMES = ["imai-seq-s0", "imai-seq-s1"]


@pytest.fixture(scope="module")
def store(s3_module_bucket, bare_module_cwd, ray_local):
    """(bucket, dataset URI): the tiny synthetic dataset, prepared once."""
    data = fsio.join(s3_module_bucket, "ds")
    assert main(["prepare", "synthetic", "--out", data, "--classes", "4", "--samples-per-class", "32",
                 "--size", "16"]) == 0
    return s3_module_bucket, data


@pytest.fixture(scope="module")
def experiment(store, tmp_path_factory):
    """(spec file, OUT URI) of a 2-run experiment whose runs live in the bucket; its `transfer`
    dataset is the bucket's too."""
    bucket, data = store
    spec = tmp_path_factory.mktemp("spec") / "s3.yaml"  # a spec is a local file; what it names is not
    spec.write_text(yaml.safe_dump({"base": str(ROOT / "pipelines" / "smoke.yaml"), "methods": ["imai"],
                                    "streams": ["seq"], "seeds": [0, 1], "overrides": {"dataset.dir": data, **MICRO},
                                    "transfer": [data], "max_concurrent": 1}))
    out = fsio.join(bucket, "exp")
    assert main(["experiment", str(spec), "--out", out, "--no-progress"]) == 0
    return spec, out


@pytest.fixture(autouse=True)
def _nothing_but_the_cache(bare_module_cwd):
    yield
    assert [p.name for p in bare_module_cwd.iterdir()] in ([], ["cache"])


def test_experiment_runs_and_outputs_live_in_the_bucket(experiment):
    _, out = experiment
    assert fsio.listdir(fsio.join(out, "runs")) == NAMES
    for name in NAMES:
        run = fsio.join(out, "runs", name)
        assert fsio.read_json(fsio.join(run, "run.json"))["status"] == "completed"
        assert "knn_scale" in fsio.read_json(fsio.join(run, "transfer", "ds", "eval.json"))["results"]
    assert {"experiment.json", "summary.csv", "comparisons.csv", "report.md"} <= set(fsio.listdir(out))
    row = pd.read_csv(fsio.local_copy(fsio.join(out, "summary.csv"))).iloc[0]
    assert row["n"] == 2 and row["transfer_ds_knn_mean"] > 0
    assert "## Table 1" in fsio.read_text(fsio.join(out, "report.md"))


def test_resume_reruns_only_the_missing_run(experiment, capsys):
    spec, out = experiment
    kept = fsio.read_bytes(fsio.join(out, "runs", NAMES[0], "metrics.parquet"))
    fsio.remove_tree(fsio.join(out, "runs", NAMES[1]))
    capsys.readouterr()
    assert main(["experiment", str(spec), "--out", out, "--resume", "--no-progress"]) == 0
    assert "2 runs, 1 already completed, 1 to run" in capsys.readouterr().out
    assert fsio.read_json(fsio.join(out, "runs", NAMES[1], "run.json"))["status"] == "completed"
    assert fsio.read_bytes(fsio.join(out, "runs", NAMES[0], "metrics.parquet")) == kept
    assert main(["experiment", str(spec), "--out", out, "--no-progress"]) == 2  # a second one is refused


def test_export_and_eval_read_and_write_the_bucket(store, experiment):
    bucket, data = store
    run = fsio.join(experiment[1], "runs", NAMES[0])
    exported = fsio.join(bucket, "exports", "cnn4.pt")
    assert main(["export", run, "--out", exported]) == 0
    assert fsio.size(exported) > 0
    for source, extra in ((run, []), (exported, ["--backbone", "cnn4"])):
        evals = fsio.join(bucket, "evals", fsio.name(source))
        assert main(["eval", source, "--dataset", data, "--out", evals, "--no-linear", *extra]) == 0
        result = fsio.read_json(fsio.join(evals, "eval.json"))
        assert result["dataset"] == data and 0 <= result["results"]["knn_scale"]["top1"] <= 1
        assert fsio.is_file(fsio.join(evals, "report.md"))


def test_columns_score_and_a_custom_stream_on_the_bucket(store, tmp_path):
    bucket, data = store
    keys = fsio.read_dataframe(fsio.join(data, "manifest.parquet"), columns=["key"])["key"]
    local = tmp_path / "t.csv"  # a local --from file, and one in the bucket
    pd.DataFrame({"key": keys, "t": range(len(keys), 0, -1)}).to_csv(local, index=False)
    remote = fsio.join(bucket, "columns", "u.csv")
    fsio.write_text(remote, pd.DataFrame({"key": keys, "u": range(len(keys))}).to_csv(index=False))
    assert main(["columns", data, "--from", str(local)]) == 0
    assert main(["columns", data, "--from", remote]) == 0
    assert main(["score", data, "--by", "class-distance", "--no-progress"]) == 0
    manifest = fsio.read_dataframe(fsio.join(data, "manifest.parquet"))
    assert {"t", "u", "difficulty_class_distance"} <= set(manifest.columns)
    assert fsio.read_json(fsio.join(data, "dataset.json"))["columns"]["u"]["from"] == remote
    assert ".score.lock" not in fsio.listdir(data)  # the lock lies in the local cache
    stream = fsio.join(bucket, "streams", "by-t")
    assert main(["stream", data, "--kind", "custom", "--order-by", "t", "--out", stream]) == 0
    order = fsio.read_table(fsio.join(stream, "index.parquet")).column("key").to_pylist()
    assert order == list(manifest.sort_values("t")["key"])


def test_a_search_keeps_tune_storage_and_trials_in_the_bucket(store, tmp_path, capsys):
    """A whole search into s3:// (one trial, then --resume) passes by hand but takes over a minute
    here; this checks its wiring: Tune's storage is OUT in the bucket, trial records live there."""
    bucket, data = store
    spec = tmp_path / "search.yaml"
    spec.write_text(yaml.safe_dump({"base": str(ROOT / "pipelines" / "smoke.yaml"),
                                    "overrides": {"dataset.dir": data, "learner.threads": 1},
                                    "space": {"eval.knn_k": {"grid": [10]}}, "search": {"algorithm": "grid"}}))
    out = fsio.join(bucket, "search")
    assert main(["tune", str(spec), "--out", out, "--resume"]) == 2
    assert "holds no search to resume" in capsys.readouterr().err
    build_tuner(load_spec(spec), out, {"dataset.dir": data})
    assert "tuner.pkl" in fsio.listdir(fsio.join(out, "tune"))  # what Tuner.restore reads on --resume
    trial = fsio.join(out, "trials", "t0")
    record_start(trial)
    record_start(trial)
    assert fsio.read_text(fsio.join(trial, STARTS_FILE)) == "start\nstart\n"
