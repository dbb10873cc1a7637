"""`streamssl columns`: per-sample columns joined into a prepared dataset's manifests, and `custom`
stream orders over several columns of any type."""

import json

import numpy as np
import pandas as pd
import pytest

from streamssl.cli import main
from streamssl.errors import ConfigError
from streamssl.ingest import prepare, read_manifest
from streamssl.ingest.columns import columns_sha256, join_columns, source_ids
from streamssl.ingest.dataset import dataset_identity
from streamssl.streams.plan import order_keys, parse_order_keys, plan_stream


@pytest.fixture
def dataset(tmp_path):
    out = tmp_path / "syn"
    prepare("synthetic", None, out, classes=3, samples_per_class=4, size=8, progress=False)
    return out


def write_csv(path, frame):
    frame.to_csv(path, index=False)
    return path


def test_columns_join_by_key_into_both_splits_and_keep_rows_and_identity(dataset, tmp_path):
    train, test = read_manifest(dataset), read_manifest(dataset / "test")
    before = dataset_identity(dataset)
    keys = list(train["key"][:5]) + list(test["key"][:2]) + ["nope_1", "nope_2"]
    domains = ["a", "b", "a", "b", "a", "c", "c", "x", "y"]
    frame = pd.DataFrame({"key": keys, "t": np.arange(9) * 0.5, "domain": domains})
    summary = join_columns(dataset, write_csv(tmp_path / "cols.csv", frame))
    assert summary["columns"] == ["t", "domain"] and summary["matched"] == 7
    assert summary["unmatched"] == 2 and summary["unmatched_keys"] == ["nope_1", "nope_2"]
    assert summary["samples"]["train"] == {"total": len(train), "without_value": len(train) - 5}
    assert summary["samples"]["test"] == {"total": len(test), "without_value": len(test) - 2}
    after = read_manifest(dataset)
    pd.testing.assert_frame_equal(after[train.columns], train)  # rows, order, other columns untouched
    assert after["t"][:5].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0] and after["t"][5:].isna().all()
    assert after["domain"][:5].tolist() == ["a", "b", "a", "b", "a"] and after["domain"][5:].isna().all()
    assert read_manifest(dataset / "test")["t"][:2].tolist() == [2.5, 3.0]
    assert dataset_identity(dataset) == before  # runs and streams built before stay valid
    record = json.loads((dataset / "dataset.json").read_text())["columns"]["t"]
    assert record["key"] == "key" and record["matched"] == 5 and len(record["sha256"]) == 64


def test_the_cli_names_unmatched_keys_in_one_line(dataset, tmp_path, capsys):
    keys = list(read_manifest(dataset)["key"][:3]) + [f"ghost{i}" for i in range(7)]
    path = write_csv(tmp_path / "c.csv", pd.DataFrame({"key": keys, "frame": range(10)}))
    assert main(["columns", str(dataset), "--from", str(path)]) == 0
    out = capsys.readouterr()
    warning = out.err.strip()
    assert len(warning.splitlines()) == 1 and warning.startswith("warning: 7 of 10 keys in c.csv match no sample")
    assert "'ghost0'" in warning and "and 2 more" in warning
    assert "joined frame by 'key': 3 of 10 rows matched" in out.out


def test_replacing_a_column_needs_replace_and_changes_its_checksum(dataset, tmp_path):
    keys = read_manifest(dataset)["key"]
    first = write_csv(tmp_path / "a.csv", pd.DataFrame({"key": keys, "t": np.arange(len(keys))}))
    second = write_csv(tmp_path / "b.csv", pd.DataFrame({"key": keys, "t": -np.arange(len(keys))}))
    join_columns(dataset, first)
    sha = columns_sha256(dataset, "-t")
    with pytest.raises(ConfigError, match="^--from: .*'t'.*--replace"):
        join_columns(dataset, second)
    join_columns(dataset, second, replace=True)
    assert read_manifest(dataset)["t"].tolist() == (-np.arange(len(keys))).tolist()
    assert columns_sha256(dataset, "t") != sha and columns_sha256(dataset, "label") is None


def test_parquet_files_join_by_source_id_in_both_splits(tmp_path, make_image_folder):
    root = make_image_folder(tmp_path / "folder", {"a": 3, "b": 3})
    out = tmp_path / "prepared"
    prepare("imagefolder", root, out, progress=False)  # holds a test split out: 1 image per class
    when = {"a/00.png": "2024-01-01 10:00", "a/02.png": "2024-01-01 09:00", "b/01.png": "2024-01-02 00:00"}
    frame = pd.DataFrame({"id": list(when), "when": pd.to_datetime(list(when.values()))})
    frame.to_parquet(tmp_path / "t.parquet")
    summary = join_columns(out, tmp_path / "t.parquet", key="id")
    assert summary["matched"] == 3 and summary["unmatched"] == 0
    both = pd.concat([read_manifest(out), read_manifest(out / "test")], ignore_index=True)
    ids = source_ids(out, read_manifest(out)) + source_ids(out / "test", read_manifest(out / "test"))
    got = {i: t for i, t in zip(ids, both["when"]) if not pd.isna(t)}
    assert got == {i: pd.Timestamp(t) for i, t in when.items()}
    keys = order_keys({"when": both["when"].to_numpy()}, "when")[0]
    ranked = [ids[i] for i in np.argsort(keys, kind="stable")[:3]]
    assert ranked == ["a/02.png", "a/00.png", "b/01.png"]  # 09:00, 10:00, the next day; NaT last


@pytest.mark.parametrize("frame, argv, flag, words", [
    (pd.DataFrame({"key": ["x", "x"], "t": [1, 2]}), [], "--from", "more than once"),
    (pd.DataFrame({"name": ["x"], "t": [1]}), [], "--key", "no column 'key'"),
    (pd.DataFrame({"key": ["x"], "t": [1]}), ["--key", "t"], "--key", "no column 't'"),
    (pd.DataFrame({"frame": ["x"], "t": [1]}), ["--key", "frame"], "--key", "manifest"),
    (pd.DataFrame({"key": ["x"], "label": [1]}), [], "--from", "dataset's own"),
    (pd.DataFrame({"key": ["x"], "frame time": [1]}), [], "--from", "plain name"),
    (pd.DataFrame({"key": ["x"]}), [], "--from", "besides the key"),
])
def test_bad_files_are_one_line_naming_the_argument(dataset, tmp_path, capsys, frame, argv, flag, words):
    path = write_csv(tmp_path / "bad.csv", frame)
    before = (dataset / "manifest.parquet").read_bytes()
    assert main(["columns", str(dataset), "--from", str(path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err and words in err
    assert (dataset / "manifest.parquet").read_bytes() == before


def test_missing_or_unknown_files_and_folders(dataset, tmp_path, capsys):
    (tmp_path / "c.txt").write_text("key,t\n")
    for argv, flag in (([str(dataset), "--from", str(tmp_path / "none.csv")], "--from"),
                       ([str(dataset), "--from", str(tmp_path / "c.txt")], "--from"),
                       ([str(tmp_path), "--from", str(tmp_path / "c.txt")], "DATASET_DIR")):
        assert main(["columns", *argv]) == 2
        assert flag in capsys.readouterr().err


def test_parse_order_keys_accepts_tie_breakers_and_refuses_bad_specs():
    assert parse_order_keys("video, -frame") == [("video", False), ("frame", True)]
    for spec, words in (("", "names no column"), ("a,,b", "names no column"), ("a,-a", "twice"),
                        ("frame time", "not a column name")):
        with pytest.raises(ConfigError, match=f"^order_by: .*{words}"):
            parse_order_keys(spec)


def test_custom_plans_sort_by_each_key_in_turn_with_text_and_descending_keys():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    columns = {"video": np.array(["v2", "v1", "v2", "v1", "v10", "v1", "v2", None], dtype=object),
               "frame": np.array([3, 2, 1, 0, 5, 1, 2, 9]), "key": np.array([f"k{i}" for i in range(8)])}
    keys = order_keys(columns, "video,-frame")
    plan = plan_stream(labels[:7], "custom", order_by=[k[:7] for k in keys])
    # v1 (frames 2, 1, 0), then v10 (lexicographic), then v2 (frames 3, 2, 1)
    assert plan.tolist() == [1, 5, 3, 4, 0, 6, 2]
    with pytest.raises(ConfigError, match="missing"):  # sample 7 has no video
        plan_stream(labels, "custom", order_by=keys)
    with pytest.raises(ConfigError, match="^order_by: 'key' identifies samples"):
        order_keys(columns, "key")
    with pytest.raises(ConfigError, match="^order_by: unknown column 'time' \\(see here\\)"):
        order_keys(columns, "frame,time", "see here")
