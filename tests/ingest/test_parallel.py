"""Ray Data ingest gives exactly the in-process result; task failures become skip records."""

import pandas as pd
import pytest

from streamssl.ingest import prepare, read_manifest
from streamssl.ingest.dataset import TASK_COLUMNS
from streamssl.ingest.parallel import run_tasks
from streamssl.ingest.wds import index_shard

pytestmark = pytest.mark.ray


def _outputs(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_imagefolder_on_ray_equals_in_process(ray_local, image_folder, tmp_path):
    prepare("imagefolder", image_folder, tmp_path / "ray", shard_size=2, parallel=True)
    prepare("imagefolder", image_folder, tmp_path / "local", shard_size=2, parallel=False)
    ray_files = _outputs(tmp_path / "ray")
    assert sorted(ray_files) == ["dataset.json", "manifest.parquet"] + [
        f"shard-00000{i}.tar" for i in range(3)
    ]
    assert ray_files == _outputs(tmp_path / "local")  # byte-identical shards, manifest and summary


def test_wds_on_ray_equals_in_process(ray_local, wds_dir, tmp_path):
    prepare("wds", wds_dir, tmp_path / "ray", parallel=True)
    prepare("wds", wds_dir, tmp_path / "local", parallel=False)
    pd.testing.assert_frame_equal(read_manifest(tmp_path / "ray"), read_manifest(tmp_path / "local"))
    assert (tmp_path / "ray" / "dataset.json").read_bytes() == (
        tmp_path / "local" / "dataset.json"
    ).read_bytes()


def test_task_errors_are_caught_in_the_task(ray_local, wds_dir):
    shards = sorted(wds_dir.glob("*.tar"))
    specs = [{"name": p.name, "path": str(p), "verify": True} for p in shards]
    specs.insert(1, {"name": "broken-spec"})  # makes index_shard raise KeyError inside the task
    frames = list(run_tasks(index_shard, specs, TASK_COLUMNS, parallel=True, bar_disable=True))
    rows = pd.concat(frames, ignore_index=True)
    assert (
        rows.shard.tolist()
        == ["imagenet22k-train-0000.tar"] * 3 + ["broken-spec"] + ["imagenet22k-train-0001.tar"] * 3
    )  # in task order
    assert rows.reason.tolist()[3] == "task failed: KeyError: 'path'"
    assert (rows.reason.drop(3) == "").all()
