"""Representation health: the pure measures against naive numpy, the crops of every method, and
the report's health table and figure."""

from pathlib import Path

import numpy as np
import pytest
import torch

from streamssl import resolve
from streamssl.evaluation import MetricsLogger
from streamssl.evaluation.health import (
    crop_cosine,
    crop_projections,
    effective_rank,
    health_generator,
    two_views,
)
from streamssl.methods import METHODS
from streamssl.report import write_report
from streamssl.resolve import build_method

pytestmark = pytest.mark.single_thread


def naive_effective_rank(x: np.ndarray) -> float:
    s = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def test_effective_rank_of_identity_like_and_rank_one_matrices():
    assert effective_rank(torch.eye(16)) == pytest.approx(16.0, abs=1e-9)
    # orthonormal rows scaled alike span 8 directions evenly: rank 8 whatever the row count
    q, _ = torch.linalg.qr(torch.randn(64, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    assert effective_rank(3.0 * q) == pytest.approx(8.0, abs=1e-6)
    u, v = torch.randn(50, 1), torch.randn(1, 32)
    assert effective_rank(u @ v) == pytest.approx(1.0, abs=1e-4)  # collapse: one direction
    assert np.isnan(effective_rank(torch.zeros(4, 3)))


def test_effective_rank_equals_the_numpy_computation():
    x = np.random.default_rng(1).standard_normal((200, 24)) * np.linspace(0.1, 3.0, 24)
    assert effective_rank(torch.from_numpy(x).float()) == pytest.approx(naive_effective_rank(x), rel=1e-5)


def test_crop_cosine_equals_the_numpy_mean_cosine():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((30, 16)), rng.standard_normal((30, 16))
    naive = np.mean([a[i] @ b[i] / np.linalg.norm(a[i]) / np.linalg.norm(b[i]) for i in range(30)])
    assert crop_cosine(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == pytest.approx(naive, abs=1e-6)
    assert crop_cosine(torch.from_numpy(a), 2.5 * torch.from_numpy(a)) == pytest.approx(1.0)
    assert np.isnan(crop_cosine(torch.zeros(0, 4), torch.zeros(0, 4)))


def _method(name: str):
    # a run fills method.classes (supervised) from the dataset; smoke has 4 classes
    classes = ["method.classes=4"] if "classes" in METHODS[name].Params.__dataclass_fields__ else []
    config = resolve.load("pipelines/smoke.yaml", [f"method.name={name}", *classes])
    return build_method(config).eval()


def _images(n=6, size=16, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_gives_two_crops_and_their_projections(name):
    method, images = _method(name), _images()
    assert two_views(method, images, health_generator(0)).shape == (2, 6, 3, 16, 16)
    z1, z2 = crop_projections(method, images, health_generator(0), batch_size=4)
    assert z1.shape == z2.shape and z1.shape[0] == 6 and z1.shape[1] == method.proj_dim
    assert not torch.equal(z1, z2)  # two different crops of each image
    again = crop_projections(method, images, health_generator(0), batch_size=4)
    assert torch.equal(again[0], z1) and torch.equal(again[1], z2)  # a seed fixes the crops
    assert -1.0 <= crop_cosine(z1, z2) <= 1.0


def test_health_crops_never_touch_the_global_rng():
    method, images = _method("imai"), _images()
    before = torch.get_rng_state()
    crop_projections(method, images, health_generator(3))
    assert torch.equal(torch.get_rng_state(), before)


def _health_run(run_dir, method: str, values: list[tuple[float, float]]) -> None:
    info = {"method": method, "stream": {"kind": "seq"}, "dataset": "synthetic", "seed": 0, "status": "completed"}
    logger = MetricsLogger(run_dir, info, tensorboard=False)
    for i, (cosine, rank) in enumerate(values):
        at = {"samples_seen": 10 * i, "progress": i / (len(values) - 1), "update": i}
        logger.log("eval/knn_top1", 0.5 + 0.1 * i, protocol="knn:scale k=5 euclidean uniform memory=8 test=8", **at)
        logger.log("eval/crop_cosine", cosine, protocol="health:crop_cosine", **at)
        logger.log("eval/effective_rank", rank, protocol="health:effective_rank", **at)
    logger.close()


def test_report_has_a_health_table_and_figure(tmp_path):
    _health_run(tmp_path / "a", "imai", [(0.42, 30.0), (0.2, 20.0), (0.055, 12.5)])
    _health_run(tmp_path / "b", "empssl", [(0.42, 30.0), (0.55, 40.0)])
    report = Path(write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "out")).read_text()
    assert "## Representation health" in report and "![representation health](health.png)" in report
    assert "| `a` | imai | seq | 0 | 0.420 | 0.055 | 30.000 | 12.500 |" in report
    assert "| `b` | empssl | seq | 0 | 0.420 | 0.550 | 30.000 | 40.000 |" in report
    assert (tmp_path / "out" / "health.png").stat().st_size > 10_000
