"""`streamssl report` over synthetic run directories written with MetricsLogger."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamssl.cli import main
from streamssl.evaluation.metrics_log import MetricsLogger

PROTO = "knn:scale k=50 euclidean uniform memory=100 test=100"
NUM_CLASSES = 4
STREAM_LEN = 1000
CURVE = [0.0, 0.10, 0.20, 0.15, 0.30]  # added to the untrained 0.40 at progress 0, .25, .5, .75, 1
FINAL_OFFSET = {("imai", "seq"): 0.10, ("imai", "seq-bl"): 0.08, ("empssl", "seq"): 0.02,
                ("empssl", "seq-bl"): 0.0}


def make_run(path, method, stream, seed=0, status="completed", offset=None, untrained=0.40):
    """A run dir: top-1 = untrained + CURVE (+ offset at the end), per-class rows, buffer counts,
    grad cosines, and a seq-like class order (class c first shown before the eval at (c + 1) / 4)."""
    offset = FINAL_OFFSET[(method, stream)] if offset is None else offset
    info = {"method": method, "stream": stream, "dataset": "toy", "num_classes": NUM_CLASSES,
            "class_names": ["tee", "trouser", "bag", "boot"], "seed": seed, "status": status,
            "updates": 100, "samples_seen": STREAM_LEN, "wall_seconds": 3.5, "git_sha": "abc123"}
    with MetricsLogger(path, info) as log:
        for i, progress in enumerate([0.0, 0.25, 0.5, 0.75, 1.0]):
            at = {"samples_seen": int(progress * STREAM_LEN), "progress": progress, "update": i * 25}
            top1 = untrained + CURVE[i] + (offset if i == 4 else 0.0)
            log.log("eval/knn_top1", top1, protocol=PROTO, **at)
            shown = np.arange(NUM_CLASSES) < i
            class_acc = np.where(shown, top1 + 0.1, top1 - 0.1)
            log.log_many("eval/knn_class_acc", class_acc, protocol=PROTO, **at)
            log.log_many("stream/classes_seen", 50.0 * shown, **at)
            log.log_many("buffer/class_count", 8.0 * shown, **at)
            if i == 4 and method == "imai":  # the default probe: the last evaluation only
                log.log("eval/linear_top1", top1 + 0.05, protocol="linear epochs=100", **at)
        for update in range(1, 101):
            log.log("train/grad_cosine", np.sin(update / 7) * 0.3 + 0.2, samples_seen=update * 10,
                    progress=update / 100, update=update)
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """2 methods x 2 streams (imai/seq with 2 seeds), reported once for the tests that read it."""
    root = tmp_path_factory.mktemp("grid")
    runs = [make_run(root / f"{m}-{s}", m, s) for m in ("imai", "empssl") for s in ("seq-bl", "seq")]
    runs.append(make_run(root / "imai-seq-1", "imai", "seq", seed=1, offset=0.14))
    out = root / "report"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    return out


def _table(text, heading):
    """Rows of the markdown table following `heading`, as lists of cell strings."""
    block = text.split(heading, 1)[1].strip().split("\n\n")[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in block.splitlines()]
    return rows[0], rows[2:]


def test_report_table1_layout_and_values(report):
    text = (report / "report.md").read_text()
    header, rows = _table(text, "## Final kNN accuracy (%): toy")
    assert header == ["method", "seq", "seq-bl"]  # paper order, whatever order the dirs came in
    cells = {row[0]: row[1:] for row in rows}
    assert [row[0] for row in rows] == ["untrained", "imai", "empssl"]
    assert cells["untrained"] == ["40.00", "40.00"]
    assert cells["imai"][0] == "82.00 ± 2.83 (n=2)"  # 0.4 + 0.3 + (0.10, 0.14)
    assert cells["imai"][1] == "78.00"
    assert cells["empssl"] == ["72.00", "70.00"]
    assert PROTO in text and "seeds: 0, 1" in text


def test_report_progress_metrics(report):
    header, rows = _table((report / "report.md").read_text(), "## Accuracy over the stream: toy")
    by_cell = {(r[0], r[1]): dict(zip(header, r)) for r in rows}
    assert list(by_cell) == [("imai", "seq"), ("imai", "seq-bl"), ("empssl", "seq"), ("empssl", "seq-bl")]
    assert by_cell[("imai", "seq")]["n"] == "2"
    assert by_cell[("imai", "seq")]["final kNN %"] == "82.00 ± 2.83"
    assert by_cell[("imai", "seq")]["linear probe %"] == "87.00 ± 2.83"  # kNN + 5 pp in make_run
    assert by_cell[("empssl", "seq")]["linear probe %"] == "n/a"  # no probe logged
    row = by_cell[("empssl", "seq")]
    assert row["n"] == "1"
    assert row["kNN @20%"] == "50.00"  # first eval at or after 20% is at 25%: 0.4 + 0.1
    assert row["untrained %"] == "40.00"
    # AUC: 0.25 * sum of trapezoids of 0.40, 0.50, 0.60, 0.55, 0.72
    auc = 0.25 * ((0.40 + 0.50) + (0.50 + 0.60) + (0.60 + 0.55) + (0.55 + 0.72)) / 2
    assert row["AUC %"] == f"{100 * auc:.2f}"
    # per-class acc = top1 + 0.1 once shown, top1 - 0.1 before (ignored): final 0.82; best earlier
    # class 0: 0.70 (at 50%), class 1: 0.70, class 2: 0.65 (75%), class 3: none, so left out
    assert row["forgetting (pp)"] == f"{100 * np.mean([-0.12, -0.12, -0.17]):.2f}"
    # seen classes are at top1 + 0.1 at every trained eval
    assert row["seen-class acc %"] == f"{100 * np.mean([0.6, 0.7, 0.65, 0.82]):.2f}"


def test_report_figures_are_real_images(report):
    text = (report / "report.md").read_text()
    for name in ("knn_vs_progress.png", "grad_cosine.png", "buffer_composition.png"):
        image = np.asarray(Image.open(report / name).convert("RGB")).astype(np.int32)
        assert image.shape[0] > 200 and image.shape[1] > 300
        colours = np.unique((image[..., 0] << 16) | (image[..., 1] << 8) | image[..., 2])
        assert len(colours) > 50  # lines, text, fills: not a blank canvas
        assert (image.min(axis=2) < 200).mean() > 0.01  # and not a nearly white one
        assert f"({name})" in text


def test_failed_run_is_flagged_and_untrained_disagreement_noted(tmp_path, capsys):
    runs = [make_run(tmp_path / "a", "imai", "seq"),
            make_run(tmp_path / "b", "minred", "seq", status="failed", offset=0.0, untrained=0.38)]
    out = tmp_path / "out"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"report: {out / 'report.md'}"
    text = (out / "report.md").read_text()
    _, rows = _table(text, "## Final kNN accuracy (%): toy")
    cells = {row[0]: row[1] for row in rows}
    assert cells["minred"] == "68.00 †"
    assert cells["imai"] == "80.00"
    assert cells["untrained"] == "39.00*"
    assert "runs' untrained kNN differ (38.00 to 40.00 %" in text
    assert re.search(r"`.*b` has status \*\*failed\*\*", text)


def test_single_run_report_into_its_own_dir_without_grad_rows(tmp_path):
    from streamssl.report import write_report

    run = tmp_path / "run"
    with MetricsLogger(run, {"method": "imai", "stream": "iid", "dataset": "toy", "seed": 0,
                             "status": "completed"}) as log:
        for p in (0.0, 1.0):
            log.log("eval/knn_top1", 0.5 + p / 10, samples_seen=int(p * 10), progress=p, update=int(p * 5))
    (run / "grad_cosine.png").write_bytes(b"stale")
    path = Path(write_report([run], run))
    text = path.read_text()
    assert path == run / "report.md"
    assert "| imai | 60.00 |" in text and "| untrained | 50.00 |" in text
    assert "gradient cosine over updates: no data logged, figure skipped" in text
    assert not (run / "grad_cosine.png").exists() and (run / "knn_vs_progress.png").is_file()


def test_bad_run_dirs_exit_2_with_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"streamssl report: error: {empty}: no metrics.parquet (not a run directory?)"
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such directory" in capsys.readouterr().err
    corrupt = make_run(tmp_path / "corrupt", "imai", "seq")
    (corrupt / "metrics.parquet").write_bytes(b"garbage")
    assert main(["report", str(corrupt), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "metrics.parquet: unreadable" in err and len(err.splitlines()) == 1
    no_method = make_run(tmp_path / "nomethod", "imai", "seq")
    (no_method / "run.json").write_text('{"stream": "seq"}')
    assert main(["report", str(no_method), "--out", str(tmp_path / "o")]) == 2
    assert "no 'method' field" in capsys.readouterr().err


def _with_config(path, seed=0, **overrides):
    """Give a run dir the resolved config.yaml a real run writes (smoke pipeline + overrides)."""
    from pathlib import Path

    from streamssl import config as cfg
    from streamssl import resolve

    smoke = Path(__file__).resolve().parents[1] / "pipelines" / "smoke.yaml"
    cfg.dump(resolve.load(smoke, {"seed": seed, "name": path.name, **overrides}), path / "config.yaml")
    return path


def test_runs_that_differ_in_a_setting_are_never_averaged(tmp_path):
    """Same seed, different learner.k: two rows named by the key, not '100.00 ± 0.00 (n=2)'."""
    from streamssl.report import write_report

    runs = [_with_config(make_run(tmp_path / "k1", "imai", "seq", offset=0.10), **{"learner.k": 1}),
            _with_config(make_run(tmp_path / "k3", "imai", "seq", offset=0.20), **{"learner.k": 3}),
            # a second seed of the k=1 setting (different run name too): averaged with k1
            _with_config(make_run(tmp_path / "k1-s1", "imai", "seq", seed=1, offset=0.14), seed=1,
                         **{"learner.k": 1})]
    text = Path(write_report(runs, tmp_path / "out")).read_text()
    _, rows = _table(text, "## Final kNN accuracy (%): toy")
    cells = {row[0]: row[1] for row in rows}
    assert cells == {"untrained": "40.00", "imai (learner.k=1)": "82.00 ± 2.83 (n=2)",
                     "imai (learner.k=3)": "90.00"}
    assert "imai: runs differ in `learner.k`; each setting is its own row" in text
    _, details = _table(text, "## Accuracy over the stream: toy")
    assert [(r[0], r[2]) for r in details] == [("imai (learner.k=1)", "2"), ("imai (learner.k=3)", "1")]


def test_same_setting_and_seed_twice_is_named_and_datasets_stay_apart(tmp_path):
    import json

    from streamssl.report import write_report

    runs = [_with_config(make_run(tmp_path / name, "imai", "seq")) for name in ("a", "b", "c")]
    for name, sha in (("a", "1" * 64), ("b", "1" * 64), ("c", "2" * 64)):  # c: another dataset, same name
        info = json.loads((tmp_path / name / "run.json").read_text())
        info["dataset_id"] = {"name": "toy", "sha256": sha}
        (tmp_path / name / "run.json").write_text(json.dumps(info))
    text = Path(write_report(runs, tmp_path / "out")).read_text()
    _, first = _table(text, f"## Final kNN accuracy (%): toy (sha256 {'1' * 12})")
    _, second = _table(text, f"## Final kNN accuracy (%): toy (sha256 {'2' * 12})")
    assert first[1] == ["imai", "80.00 ± 0.00 (n=2)"] and second[1] == ["imai", "80.00"]
    assert "imai on seq: several runs with seed 0: reruns of one setting, not independent seeds" in text
