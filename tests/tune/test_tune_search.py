"""A micro grid search over the smoke pipeline: outputs, ASHA stopping, best.yaml, resume."""

import json

import pandas as pd
import pytest
from tunespec import write_spec

from streamssl import cli, resolve
from streamssl.pipeline import run_pipeline
from streamssl.tune.trial import STARTS_FILE

pytestmark = pytest.mark.ray

# knn_k = 96 = all 96 memory samples with uniform votes predicts one class for every test and
# validation image: a deliberately harmful setting whose kNN is far below the good one's at every point
SPACE = {"eval.knn_k": {"grid": [10, 96]}}
# one trial at a time in grid order, so the good trial sets the rung before the harmful one arrives
SEARCH = {"algorithm": "grid", "max_concurrent": 1, "asha": {"grace": 0.25, "reduction_factor": 2}}


@pytest.fixture(scope="module")
def search(data_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    spec = write_spec(folder, SPACE, SEARCH)
    assert cli.main(["tune", str(spec), "--out", str(folder / "out")]) == 0
    return spec, folder / "out"


def board(out):
    return pd.read_csv(out / "leaderboard.csv").set_index("eval.knn_k")


def test_search_writes_leaderboard_best_yaml_and_figures(search):
    _, out = search
    frame = board(out)
    assert list(frame.columns[:2]) == ["rank", "trial"] and len(frame) == 2
    for column in ("final_knn", "knn_at_20", "knn_auc", "updates", "wall_s", "status"):
        assert column in frame.columns
    assert frame.loc[10, "status"] == "completed" and frame.loc[10, "rank"] == 1
    assert frame.loc[10, "updates"] == 8 and frame.loc[10, "final_knn"] > frame.loc[96, "final_knn"]
    assert "eval.knn_k" in (out / "leaderboard.md").read_text()
    assert resolve.load(out / "best.yaml").eval.knn_k == 10
    for name in ("params_vs_metric.png", "top_trials_knn.png"):
        assert (out / name).stat().st_size > 0
    trial = out / "trials" / frame.loc[10, "trial"]
    assert json.loads((trial / "run.json").read_text())["status"] == "completed"


def test_asha_stops_the_harmful_trial_before_the_end(search):
    _, out = search
    row = board(out).loc[96]
    assert row["status"].startswith("stopped at")
    progress = pd.read_parquet(out / "trials" / row["trial"] / "metrics.parquet")["progress"].max()
    assert progress < 1.0 and row["updates"] < 8
    # the stopped trial's worker placement group was released, not left holding its CPUs
    import ray.util

    group = (out / "trials" / row["trial"] / "workers" / "rank0.placement_group").read_text().strip()
    assert ray.util.placement_group_table()[group]["state"] == "REMOVED"


def test_best_yaml_runs(search, tmp_path):
    _, out = search
    info = run_pipeline(resolve.load(out / "best.yaml"), tmp_path / "best", progress=False, trainer="local")
    assert info["status"] == "completed" and info["samples_seen"] == 128


def test_resume_does_not_rerun_finished_trials(search, capsys):
    spec, out = search
    before = (out / "leaderboard.csv").stat().st_mtime_ns
    assert cli.main(["tune", str(spec), "--out", str(out), "--resume"]) == 0
    starts = [len((d / STARTS_FILE).read_text().splitlines()) for d in (out / "trials").iterdir()]
    assert starts == [1, 1]
    assert (out / "leaderboard.csv").stat().st_mtime_ns > before and "2 trials" in capsys.readouterr().out
