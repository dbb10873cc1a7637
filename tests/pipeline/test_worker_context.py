"""The one worker context: built once by the pipeline for both paths, frozen and picklable."""

import ast
import dataclasses
import pickle
from pathlib import Path

import pytest
import torch

from streamssl import resolve as cfg
from streamssl.pipeline.run import worker_context
from streamssl.train import worker


def _context(tmp_path, ray_train, *overrides):
    config = cfg.load("pipelines/smoke.yaml", list(overrides))
    dirs = [tmp_path / name for name in ("run", "dataset", "stream")]
    return worker_context(config, *dirs, 128, ray_train=ray_train, progress=True, resume_dir=None)


def test_the_in_process_context_is_one_worker_with_a_progress_bar(tmp_path):
    ctx = _context(tmp_path, False, "learner.threads=3")
    assert (ctx.rank, ctx.world, ctx.threads, ctx.progress, ctx.read_cpus) == (0, 1, 3, True, None)
    assert ctx.run_dir == str((tmp_path / "run").resolve()) and ctx.stop_file == f"{ctx.run_dir}/STOP"
    assert ctx.device == torch.device("cpu")


def test_the_ray_train_context_travels_whole_and_each_worker_sets_its_rank(tmp_path):
    ctx = _context(tmp_path, True, "scaling.num_workers=2", "scaling.cpus_per_worker=2")
    assert (ctx.world, ctx.threads, ctx.progress) == (2, 2, False) and ctx.read_cpus is not None
    shipped = pickle.loads(pickle.dumps(ctx))
    assert shipped == ctx
    with pytest.raises(dataclasses.FrozenInstanceError):
        shipped.rank = 1
    assert dataclasses.replace(shipped, rank=1).rank == 1 and ctx.rank == 0


def test_the_worker_imports_no_ray():
    tree = ast.parse(Path(worker.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [name for name in names if name == "ray" or name.startswith("ray.")]
