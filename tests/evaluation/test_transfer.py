"""`streamssl eval`: a frozen backbone (a run's or a file's) scored by kNN (both protocols) and a linear
probe on other prepared datasets: other sizes, class counts, grayscale and RGBA images."""

import io
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from streamssl.augment import TRAIN_MEAN, TRAIN_STD, to_model_input
from streamssl.cli import main
from streamssl.evaluation import knn_accuracy
from streamssl.export import write_backbone
from streamssl.ingest import prepare, read_manifest
from streamssl.ingest.reader import load_rows
from streamssl.models import build_backbone


class Holder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone, _ = build_backbone("cnn4")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    a = root / "syn16"
    prepare("synthetic", None, a, classes=4, samples_per_class=12, size=16, seed=0, progress=False)
    b = root / "syn24"
    prepare("synthetic", None, b, classes=3, samples_per_class=10, size=24, seed=1, progress=False)
    return {"a": a, "b": b, "mixed": _mixed_folder(root)}


def _mixed_folder(root):
    """3 classes of grayscale 20x20 and RGBA 24x24 PNGs, prepared with a held-out test split."""
    rng = np.random.default_rng(0)
    folder = root / "mixed-src"
    for c in range(3):
        (folder / f"class{c}").mkdir(parents=True)
        for i in range(9):
            shape, mode = ((20, 20), "L") if i % 2 else ((24, 24, 4), "RGBA")
            pixels = np.clip(rng.normal(60 + 60 * c, 20, shape), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(pixels, mode).save(buf, format="PNG")
            (folder / f"class{c}" / f"{i}.png").write_bytes(buf.getvalue())
    out = root / "mixed"
    prepare("imagefolder", folder, out, progress=False)
    return out


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = {"model": {"backbone": "cnn4", "image_size": 16},
              "eval": {"knn_k": 5, "linear_epochs": 5, "memory_samples": 1000, "test_samples": 1000}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "run.json").write_text(json.dumps({"stream_samples": 64}))
    write_backbone(run, Holder())
    return run


def by_hand(dataset, read_size=None, k=5):
    """kNN top-1 (scale protocol) computed outside the eval module: 16 px model inputs as training makes
    them (`to_model_input`), normalized with the training constants."""
    net = Holder().backbone.eval()
    feats, labels = [], []
    for split in (dataset, dataset / "test"):
        rows = read_manifest(split)
        images, y = load_rows(split, rows, size=read_size)
        x = to_model_input(images, 16).float() / 255
        x = (x - torch.tensor(TRAIN_MEAN).view(1, 3, 1, 1)) / torch.tensor(TRAIN_STD).view(1, 3, 1, 1)
        with torch.no_grad():
            feats.append(net(x))
        labels.append(torch.from_numpy(np.array(y)))
    return knn_accuracy(feats[0], labels[0], feats[1], labels[1], k=k, protocol="scale")["top1"]


def test_a_run_is_scored_on_two_datasets_of_other_sizes_and_class_counts(run_dir, datasets, tmp_path, one_thread):
    for name, classes, train, test in (("a", 4, 48, 8), ("b", 3, 30, 6)):  # synthetic tests: a fifth
        out = tmp_path / f"eval-{name}"
        assert main(["eval", str(run_dir), "--dataset", str(datasets[name]), "--out", str(out)]) == 0
        result = json.loads((out / "eval.json").read_text())
        assert result["num_classes"] == classes and result["image_size"] == 16 and result["backbone"] == "cnn4"
        assert (result["memory_samples"], result["test_samples"]) == (train, test)
        assert set(result["results"]) == {"knn_scale", "knn_cosine", "linear"}
        protocols = {key: value["protocol"] for key, value in result["results"].items()}
        assert protocols["knn_scale"].startswith("knn:scale k=5 euclidean")
        assert protocols["knn_cosine"].startswith("knn:cosine k=5")
        assert protocols["linear"].startswith("linear epochs=5")
        assert all("from=source-split" in p for p in protocols.values())
        for value in result["results"].values():
            assert 0 <= value["top1"] <= 1 and len(value["per_class"]) == classes
        report = (out / "report.md").read_text()
        assert all(p in report for p in protocols.values())
    assert result["results"]["knn_scale"]["top1"] == pytest.approx(by_hand(datasets["b"]))


def test_a_backbone_file_on_grayscale_and_rgba_images_of_mixed_sizes(run_dir, datasets, tmp_path, one_thread):
    out = tmp_path / "eval-mixed"
    assert main(["eval", str(run_dir / "backbone.pt"), "--backbone", "cnn4", "--image-size", "16",
                 "--dataset", str(datasets["mixed"]), "--out", str(out), "--no-linear", "--knn-k", "5"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["read_size"] == 16  # mixed sizes: resized to the model input as they are read
    assert set(result["results"]) == {"knn_scale", "knn_cosine"}
    assert "from=held-out-1/6" in result["results"]["knn_scale"]["protocol"]
    assert result["results"]["knn_scale"]["top1"] == pytest.approx(by_hand(datasets["mixed"], read_size=16))


def test_bn_recalibration_is_recorded_in_the_protocol(run_dir, datasets, tmp_path, one_thread):
    out = tmp_path / "eval-bn"
    assert main(["eval", str(run_dir), "--dataset", str(datasets["a"]), "--out", str(out), "--bn", "recalibrate",
                 "--no-linear"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["bn"] == "recalibrate"
    assert all(v["protocol"].endswith(" bn=recalibrated") for v in result["results"].values())


@pytest.mark.parametrize("extra, flag", [
    (["{file}"], "--backbone"),  # a file without its architecture
    (["{file}", "--backbone", "resnet18"], "--backbone"),  # the wrong architecture
    (["{file}", "--backbone", "cnn4", "--at", "0.5"], "--at"),  # snapshots belong to runs
    (["{run}", "--at", "0.5"], "--at"),  # a run without snapshots
    (["{run}", "--bn", "fresh"], "--bn"),
    (["{missing}"], "SOURCE"),
])
def test_eval_argument_errors_are_one_line_naming_the_argument(run_dir, datasets, tmp_path, capsys, extra, flag):
    names = {"file": str(run_dir / "backbone.pt"), "run": str(run_dir), "missing": str(tmp_path / "none")}
    argv = [arg.format(**names) for arg in extra]
    code = main(["eval", *argv, "--dataset", str(datasets["a"]), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and flag in err


def test_eval_refuses_a_folder_that_is_no_prepared_dataset(run_dir, tmp_path, capsys):
    assert main(["eval", str(run_dir), "--dataset", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--dataset" in capsys.readouterr().err
