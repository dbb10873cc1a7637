"""summary.csv, comparisons.csv and report.md of an experiment, from run directories written with
MetricsLogger (no Ray): known per-seed values in, scipy's statistics out."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from streamssl.evaluation.metrics_log import MetricsLogger
from streamssl.experiment.outputs import write_outputs
from streamssl.experiment.schedule import RUNS
from streamssl.experiment.spec import expand, load_spec

SMOKE = Path(__file__).resolve().parents[2] / "pipelines" / "smoke.yaml"
SEEDS = list(range(6))
UNTRAINED = [0.50, 0.52, 0.49, 0.51, 0.50, 0.48]  # by seed, shared by both methods of a seed
# final kNN by seed: imai beats empssl by 2..7 points on seq; on seq-bl only imai's seed 0 completes
FINAL = {("empssl", "seq"): [0.60, 0.62, 0.58, 0.61, 0.59, 0.63],
         ("imai", "seq"): [0.62, 0.65, 0.62, 0.66, 0.65, 0.70],
         ("empssl", "seq-bl"): [0.55, 0.57, 0.56, 0.54, 0.58, 0.55],
         ("imai", "seq-bl"): [0.57, None, None, None, None, None]}


def make_run(path: Path, method: str, stream: str, seed: int) -> None:
    final = FINAL[(method, stream)][seed]
    info = {"method": method, "stream": stream, "dataset": "toy", "seed": seed, "num_classes": 4,
            "status": "completed" if final is not None else "failed"}
    if final is None:
        path.mkdir(parents=True)
        (path / "run.json").write_text(json.dumps({**info, "error": "loss is nan at update 3"}))
        return
    with MetricsLogger(path, info) as log:
        for progress, value in ((0.0, UNTRAINED[seed]), (0.5, (UNTRAINED[seed] + final) / 2), (1.0, final)):
            at = {"samples_seen": int(progress * 100), "progress": progress, "update": int(progress * 10)}
            log.log("eval/knn_top1", value, protocol="knn:scale k=3", **at)
        log.log("eval/linear_top1", final + 0.1, protocol="linear", samples_seen=100, progress=1.0, update=10)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exp")
    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"base": str(SMOKE), "methods": ["empssl", "imai"],
                                         "streams": ["seq-bl", "seq"], "seeds": SEEDS, "reference": "empssl",
                                         "overrides": {"method.crops": 2}}, sort_keys=False))
    spec = load_spec(spec_path)
    out = folder / "out"
    for run in expand(spec):
        make_run(out / RUNS / run.name, run.method, run.stream, run.seed)
    files, text = write_outputs(spec, out)
    return spec, out, files, text


def pct(values):
    return [100 * v for v in values if v is not None]


def t_bounds(values):
    mean, sem = np.mean(values), sps.sem(values)
    return sps.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)


def test_summary_csv(experiment):
    _, out, files, _ = experiment
    assert set(files) == {"summary.csv", "comparisons.csv", "report.md", "knn_vs_progress.png"}
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert list(summary[["stream", "method"]].itertuples(index=False, name=None)) == [
        ("seq-bl", "empssl"), ("seq", "empssl"), ("seq-bl", "imai"), ("seq", "imai")]  # matrix order
    row = summary.set_index(["method", "stream"]).loc[("imai", "seq")]
    values = pct(FINAL[("imai", "seq")])
    low, high = t_bounds(values)
    assert row["dataset"] == "toy" and row["n"] == 6
    assert float(row["final_knn_mean"]) == pytest.approx(np.mean(values))
    assert float(row["final_knn_std"]) == pytest.approx(np.std(values, ddof=1))
    assert (float(row["final_knn_ci_low"]), float(row["final_knn_ci_high"])) == pytest.approx((low, high))
    assert float(row["final_linear_mean"]) == pytest.approx(np.mean(values) + 10)
    mid = [(100 * u + v) / 2 for u, v in zip(UNTRAINED, values)]  # the first eval at >= 20%: 50%
    assert float(row["knn_at_20_mean"]) == pytest.approx(np.mean(mid))
    auc = [(100 * u + 2 * m + v) / 4 for u, m, v in zip(UNTRAINED, mid, values)]  # trapezoids over 0, .5, 1
    assert float(row["knn_auc_mean"]) == pytest.approx(np.mean(auc))
    single = summary.set_index(["method", "stream"]).loc[("imai", "seq-bl")]
    assert single["n"] == 1 and float(single["final_knn_mean"]) == pytest.approx(57.0)
    for stat in ("final_knn_std", "final_knn_ci_low", "final_knn_ci_high", "knn_auc_ci_low"):
        assert single[stat] == ""  # one seed: no spread, no interval, an empty cell


def test_comparisons_csv(experiment):
    _, out, _, _ = experiment
    comparisons = pd.read_csv(out / "comparisons.csv", keep_default_na=False).set_index("stream")
    assert list(comparisons.columns) == ["method", "reference", "n_pairs", "mean_diff", "ci_low", "ci_high",
                                         "p_value", "wilcoxon_p"]
    seq = comparisons.loc["seq"]
    a, b = pct(FINAL[("imai", "seq")]), pct(FINAL[("empssl", "seq")])
    diff = np.subtract(a, b)
    assert (seq["method"], seq["reference"], seq["n_pairs"]) == ("imai", "empssl", 6)
    assert float(seq["mean_diff"]) == pytest.approx(diff.mean())
    assert (float(seq["ci_low"]), float(seq["ci_high"])) == pytest.approx(t_bounds(diff))
    assert float(seq["p_value"]) == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert float(seq["wilcoxon_p"]) == pytest.approx(sps.wilcoxon(diff).pvalue)
    bl = comparisons.loc["seq-bl"]
    assert bl["n_pairs"] == 1 and float(bl["mean_diff"]) == pytest.approx(2.0)
    assert bl["ci_low"] == bl["p_value"] == bl["wilcoxon_p"] == ""


def test_report_md_table_floor_and_significance(experiment):
    _, out, _, text = experiment
    report = (out / "report.md").read_text()
    table = report.split("## Table 1: final kNN top-1 (%)", 1)[1].strip().split("\n\n")[0].splitlines()
    rows = {line.strip("|").split("|")[0].strip(): [c.strip() for c in line.strip("|").split("|")[1:]]
            for line in table[2:]}
    assert table[0] == "| method | seq | seq-bl |"  # paper order
    floor = pct(UNTRAINED)
    half = (t_bounds(floor)[1] - t_bounds(floor)[0]) / 2
    assert rows["untrained"] == [f"{np.mean(floor):.2f} ± {half:.2f}"] * 2
    imai = pct(FINAL[("imai", "seq")])
    assert rows["imai"] == [f"{np.mean(imai):.2f} ± {(t_bounds(imai)[1] - t_bounds(imai)[0]) / 2:.2f}",
                            "57.00 (n=1)"]
    p = sps.ttest_rel(imai, pct(FINAL[("empssl", "seq")])).pvalue
    assert p < 0.05
    line = next(line for line in report.splitlines() if line.startswith("- **imai** is above empssl on seq:"))
    assert f"p = {p:.3g}" in line and "6 seeds" in line
    assert "`runs/imai-seq-bl-s1`: failed (loss is nan at update 3)" in report
    assert "![kNN accuracy vs samples seen" in report
    assert text.startswith("## Table 1") and "is above empssl on seq" in text  # what the CLI prints
    assert not math.isnan(p)
