"""The CI experiment (experiments/smoke.yaml: 2 methods x 1 stream x 3 seeds) through the CLI on a
local Ray: its CSVs against statistics recomputed here from the run directories' metrics, a refused
second experiment, --resume after a deleted run, and a failing run that stops nothing else."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from streamssl import cli

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "experiments" / "smoke.yaml"
NAMES = [f"{m}-seq-s{s}" for m in ("empssl", "imai") for s in (0, 1, 2)]


@pytest.fixture(scope="module")
def experiment(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment") / "out"
    assert cli.main(["experiment", str(SPEC), "--out", str(out), "--no-progress"]) == 0
    return out


def knn_curve(run_dir: Path) -> pd.DataFrame:
    """eval/knn_top1 (in percent) by stream progress, read straight from metrics.parquet."""
    frame = pd.read_parquet(run_dir / "metrics.parquet")
    rows = frame[(frame.metric == "eval/knn_top1") & (frame.class_id < 0)].sort_values("samples_seen")
    return rows.assign(value=100 * rows.value)


def recomputed(run_dir: Path) -> dict:
    curve = knn_curve(run_dir)
    frame = pd.read_parquet(run_dir / "metrics.parquet")
    linear = frame[(frame.metric == "eval/linear_top1") & (frame.class_id < 0)].sort_values("samples_seen")
    x, y = curve.progress.to_numpy(), curve.value.to_numpy()
    return {"final_knn": y[-1], "final_linear": 100 * linear.value.iloc[-1], "knn_at_20": y[np.argmax(x >= 0.2)],
            "knn_auc": float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))}


def test_run_dirs_are_seeded_normal_runs(experiment):
    assert sorted(p.name for p in (experiment / "runs").iterdir()) == NAMES
    for name in NAMES:
        info = json.loads((experiment / "runs" / name / "run.json").read_text())
        config = yaml.safe_load((experiment / "runs" / name / "config.yaml").read_text())
        assert info["status"] == "completed" and (experiment / "runs" / name / "report.md").is_file()
        assert info["seed"] == config["seed"] == int(name[-1]) and config["method"]["name"] == name.split("-")[0]


def test_summary_and_comparisons_agree_with_the_run_dirs(experiment):
    values = {name: recomputed(experiment / "runs" / name) for name in NAMES}
    summary = pd.read_csv(experiment / "summary.csv").set_index("method")
    dataset = json.loads((experiment / "runs" / NAMES[0] / "run.json").read_text())["dataset_id"]["name"]
    for method in ("empssl", "imai"):
        row = summary.loc[method]
        assert dataset.startswith("synthetic")  # named by the dataset's identity, not its source
        assert (row["dataset"], row["stream"], row["n"]) == (dataset, "seq", 3)
        for metric in ("final_knn", "final_linear", "knn_at_20", "knn_auc"):
            seeds = [values[f"{method}-seq-s{s}"][metric] for s in (0, 1, 2)]
            assert row[f"{metric}_mean"] == pytest.approx(np.mean(seeds))
            assert row[f"{metric}_std"] == pytest.approx(np.std(seeds, ddof=1))
            if np.std(seeds) > 0:  # equal values have a zero-width interval (scipy: NaN bounds)
                low, high = sps.t.interval(0.95, 2, loc=np.mean(seeds), scale=sps.sem(seeds))
                assert (row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]) == pytest.approx((low, high))
    a = [values[f"imai-seq-s{s}"]["final_knn"] for s in (0, 1, 2)]
    b = [values[f"empssl-seq-s{s}"]["final_knn"] for s in (0, 1, 2)]
    row = pd.read_csv(experiment / "comparisons.csv").iloc[0]
    assert (row["method"], row["reference"], row["stream"], row["n_pairs"]) == ("imai", "empssl", "seq", 3)
    assert row["mean_diff"] == pytest.approx(np.mean(np.subtract(a, b)))
    if np.std(np.subtract(a, b)) > 0:
        assert row["p_value"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert np.isnan(row["wilcoxon_p"])  # 3 pairs: no Wilcoxon test
    assert "## Table 1: final kNN top-1 (%)" in (experiment / "report.md").read_text()
    assert (experiment / "knn_vs_progress.png").stat().st_size > 10_000


def test_a_second_experiment_into_the_same_dir_is_refused(experiment, capsys):
    before = (experiment / "summary.csv").read_bytes()
    assert cli.main(["experiment", str(SPEC), "--out", str(experiment), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds an experiment" in err and "--resume" in err
    assert (experiment / "summary.csv").read_bytes() == before


def test_resume_reruns_only_the_missing_run(experiment, capsys):
    kept = {name: (experiment / "runs" / name / "metrics.parquet").stat().st_mtime_ns
            for name in NAMES if name != "imai-seq-s1"}
    shutil.rmtree(experiment / "runs" / "imai-seq-s1")
    capsys.readouterr()
    assert cli.main(["experiment", str(SPEC), "--out", str(experiment), "--resume", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "6 runs, 5 already completed, 1 to run" in out and "imai-seq-s1: final kNN" in out
    assert json.loads((experiment / "runs" / "imai-seq-s1" / "run.json").read_text())["status"] == "completed"
    assert {name: (experiment / "runs" / name / "metrics.parquet").stat().st_mtime_ns for name in kept} == kept
    assert pd.read_csv(experiment / "summary.csv")["n"].tolist() == [3, 3]


def test_a_failing_run_is_recorded_and_stops_nothing(data_root, tmp_path, capsys):
    spec = yaml.safe_load(SPEC.read_text())
    spec.update(base=str(ROOT / "pipelines" / "smoke.yaml"), methods=["empssl"], seeds=[0],
                grid={"learner.lr": [0.03, 1.0e30]})  # the huge step size makes the loss non-finite
    spec.pop("reference")
    path = tmp_path / "fails.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert cli.main(["experiment", str(path), "--out", str(out), "--no-progress"]) == 1
    printed = capsys.readouterr().out
    failed = json.loads((out / "runs" / "empssl-seq-lr1.0e+30-s0" / "run.json").read_text())
    assert failed["status"] == "failed" and "update" in failed["error"]
    assert json.loads((out / "runs" / "empssl-seq-lr0.03-s0" / "run.json").read_text())["status"] == "completed"
    assert "FAILED empssl-seq-lr1.0e+30-s0" in printed and "2 runs: 1 completed, 1 failed" in printed
    summary = pd.read_csv(out / "summary.csv").set_index("learner.lr")
    assert summary.loc[0.03, "n"] == 1 and summary.loc[1e30, "n"] == 0
    assert "`runs/empssl-seq-lr1.0e+30-s0`: failed" in (out / "report.md").read_text()
