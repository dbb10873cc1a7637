"""Operating-point warnings: MCC below 8 crops is flagged in run.json and in report.md."""

from pathlib import Path

import pytest

from streamssl import resolve
from streamssl.evaluation.metrics_log import MetricsLogger
from streamssl.methods import METHODS, operating_warnings
from streamssl.pipeline import run_info
from streamssl.report import write_report


def smoke(*overrides):
    return resolve.load("pipelines/smoke.yaml", list(overrides))


@pytest.mark.parametrize("crops", [2, 4, 7])
def test_imai_below_8_crops_warns_naming_the_key(crops):
    (message,) = operating_warnings(smoke("method.name=imai", f"method.crops={crops}"))
    assert message.startswith(f"method.crops={crops} < 8: MCC's positive (the crop mean) contains the anchor crop")
    assert "the paper uses N=20" in message


@pytest.mark.parametrize("overrides", [["method.crops=8"], ["method.crops=20"],
                                       ["method.crops=4", "method.lambda_mcc=0"]])  # lambda_mcc 0: no MCC
def test_imai_at_its_operating_point_or_without_mcc_does_not_warn(overrides):
    assert operating_warnings(smoke("method.name=imai", *overrides)) == []


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"imai"}))
def test_methods_without_mcc_do_not_warn_even_with_few_crops(name):
    crops = ["method.crops=2"] if "crops" in METHODS[name].Params.__dataclass_fields__ else []
    assert operating_warnings(smoke(f"method.name={name}", *crops)) == []


@pytest.mark.parametrize("method", ["imai", "empssl", "minred", "scale"])
def test_the_cpu_demo_preset_runs_imai_at_its_operating_point(method):
    assert operating_warnings(resolve.load("pipelines/fmnist-cpu.yaml", [f"method.name={method}"])) == []


def test_run_json_records_the_warnings():
    info = run_info(smoke("method.crops=4"), Path("data"), ["a", "b"], "running")
    assert info["warnings"] == operating_warnings(smoke("method.crops=4")) and len(info["warnings"]) == 1
    assert run_info(smoke("method.crops=8"), Path("data"), ["a", "b"], "running")["warnings"] == []


def _run_dir(path, method, warnings):
    info = {"method": method, "stream": "seq", "dataset": "toy", "num_classes": 2, "class_names": ["a", "b"],
            "seed": 0, "status": "completed", "warnings": warnings}
    with MetricsLogger(path, info, tensorboard=False) as log:
        for progress in (0.0, 1.0):
            log.log("eval/knn_top1", 0.5 + progress / 4, samples_seen=int(100 * progress), progress=progress,
                    update=int(10 * progress), protocol="knn:scale")
    return path


def test_report_lists_each_warning_once_with_its_runs(tmp_path):
    message = operating_warnings(smoke("method.crops=4"))[0]
    runs = [_run_dir(tmp_path / f"imai-{seed}", "imai", [message]) for seed in range(2)]
    runs.append(_run_dir(tmp_path / "empssl", "empssl", []))
    text = Path(write_report(runs, tmp_path / "report")).read_text()
    section = text.split("## Warnings\n\n", 1)[1].split("\n\n", 1)[0]
    assert section == f"- `imai` (2 of 3 runs): {message}"
    clean = Path(write_report(runs[2:], tmp_path / "clean")).read_text()
    assert "## Warnings" not in clean


def crops_per_stream_batch(config) -> int:
    """Crops a method trains on per stream batch once the buffer is full: K x images per update x views."""
    b = config.learner.stream_batch
    images = b if config.learner.schedule == "minred" else 2 * b  # accv: B incoming + B replayed
    return config.learner.k * images * config.method.get("crops", 2)  # two views unless multi-crop


def test_the_cpu_demo_preset_gives_every_method_the_same_crop_budget():
    budgets = {m: crops_per_stream_batch(resolve.load("pipelines/fmnist-cpu.yaml", [f"method.name={m}"]))
               for m in ("imai", "empssl", "minred", "scale")}
    assert len(set(budgets.values())) == 1, budgets
