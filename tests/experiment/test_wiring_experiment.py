"""An experiment's compute and transfer columns (summary.csv, report.md) from run directories
written by hand (no Ray): known run.json `compute` and transfer eval.json values in, their means out."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from streamssl.errors import ConfigError
from streamssl.evaluation.metrics_log import MetricsLogger
from streamssl.experiment.outputs import write_outputs
from streamssl.experiment.schedule import RUNS, transfer_dir
from streamssl.experiment.spec import expand, load_spec

SMOKE = Path(__file__).resolve().parents[2] / "pipelines" / "smoke.yaml"


def make_run(path: Path, seed: int, other: Path) -> None:
    compute = {"flops_per_update": 10 ** 9, "flops_total": (seed + 1) * 10 ** 12, "samples_per_s": 50.0 + seed,
               "data_wait_fraction": 0.1, "peak_rss_bytes": 512 * 2 ** 20, "gpu_peak_bytes": None}
    info = {"method": "imai", "stream": "seq", "dataset": "toy", "seed": seed, "num_classes": 4,
            "status": "completed", "compute": compute}
    with MetricsLogger(path, info, tensorboard=False) as log:
        log.log("eval/knn_top1", 0.5 + seed / 10, protocol="knn:scale k=3", samples_seen=100, progress=1.0, update=9)
    out = transfer_dir(path, other)
    out.mkdir(parents=True)
    results = {"knn_scale": {"top1": 0.3 + seed / 10}, "knn_cosine": {"top1": 0.1}, "linear": {"top1": 0.4}}
    (out / "eval.json").write_text(json.dumps({"results": results}))


@pytest.fixture
def spec_dir(tmp_path):
    other = tmp_path / "cifar-like"
    other.mkdir()
    (other / "dataset.json").write_text("{}")
    return tmp_path, other


def test_summary_has_compute_and_transfer_columns(spec_dir):
    folder, other = spec_dir
    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"base": str(SMOKE), "methods": ["imai"], "streams": ["seq"],
                                         "seeds": [0, 1], "transfer": [other.name]}))
    spec = load_spec(spec_path)
    assert spec.transfer == (other.resolve(),)
    for run in expand(spec):
        make_run(folder / "out" / RUNS / run.name, run.seed, other)
    files, _ = write_outputs(spec, folder / "out")
    row = pd.read_csv(files["summary.csv"]).iloc[0]
    assert row["tflops_total_mean"] == pytest.approx(1.5) and row["samples_per_s_mean"] == pytest.approx(50.5)
    assert row["data_wait_pct_mean"] == pytest.approx(10.0) and row["peak_rss_mib_mean"] == pytest.approx(512)
    assert row["transfer_cifar-like_knn_mean"] == pytest.approx(35.0)
    assert row["transfer_cifar-like_linear_mean"] == pytest.approx(40.0)
    report = files["report.md"].read_text()
    assert "## Accuracy against compute" in report and "cifar-like knn %" in report
    assert "| imai | seq | 55 | 1.5 | 50.5 | 10 | 512 | 35 | 40 |" in report


def test_transfer_must_name_prepared_datasets(tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"base": str(SMOKE), "methods": ["imai"], "streams": ["seq"],
                                         "seeds": [0], "transfer": ["missing"]}))
    with pytest.raises(ConfigError, match=r"^transfer: .*missing is not a prepared dataset"):
        load_spec(spec_path)
