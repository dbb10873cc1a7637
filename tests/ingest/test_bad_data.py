"""Bad data is skipped, counted and named (or stops --strict with exit 2); bad arguments exit 2."""

import tarfile

import pytest

from streamssl.cli import main
from streamssl.ingest import load_dataset_info, prepare, read_manifest, read_samples

SHARD = "imagenet22k-train-0000.tar"


@pytest.fixture
def three(make_sample, jpeg_bytes):
    """three(prefix): members of samples {prefix}0..2 with labels 0..2."""
    return lambda prefix="k": [m for i in range(3) for m in make_sample(f"{prefix}{i}", i, jpeg_bytes)]


def _offsets(path):
    with tarfile.open(path) as tf:
        return {m.name: (m.offset, m.offset_data) for m in tf}


def _skips(out):
    return [(s["shard"], s["key"], s["reason"]) for s in load_dataset_info(out)["skipped"]]


def test_truncated_inside_a_sample_keeps_the_samples_before(tmp_path, jpeg_bytes, make_shards, three):
    folder = make_shards(tmp_path / "in", three())
    cut = _offsets(folder / SHARD)["k1.jpg"][1] + 100  # inside k1's image data
    (folder / SHARD).write_bytes((folder / SHARD).read_bytes()[:cut])
    prepare("wds", folder, tmp_path / "out", parallel=False)
    assert read_manifest(tmp_path / "out").key.tolist() == ["k0"]
    assert read_samples(tmp_path / "out", read_manifest(tmp_path / "out"))[0]["jpg"] == jpeg_bytes
    [(shard, key, reason)] = _skips(tmp_path / "out")
    assert (shard, key) == (SHARD, "k1") and reason.startswith("sample cut off: truncated at byte")


def test_truncated_between_samples_is_reported_for_the_shard(tmp_path, jpeg_bytes, make_shards, three):
    folder = make_shards(tmp_path / "in", three())
    cut = _offsets(folder / SHARD)["k2.jpg"][0]  # right before k2's first header
    (folder / SHARD).write_bytes((folder / SHARD).read_bytes()[:cut])
    prepare("wds", folder, tmp_path / "out", parallel=False)
    assert read_manifest(tmp_path / "out").key.tolist() == ["k0", "k1"]
    assert _skips(tmp_path / "out") == [(SHARD, None, f"truncated at byte {cut} (no end-of-archive marker)")]


def test_corrupt_header_keeps_the_samples_before(tmp_path, jpeg_bytes, make_shards, three):
    folder = make_shards(tmp_path / "in", three(), three("m"))
    data = bytearray((folder / SHARD).read_bytes())
    start = _offsets(folder / SHARD)["k2.jpg"][0]
    data[start : start + 512] = b"\xff" * 512
    (folder / SHARD).write_bytes(bytes(data))
    prepare("wds", folder, tmp_path / "out", parallel=False)
    assert read_manifest(tmp_path / "out").key.tolist() == ["k0", "k1", "m0", "m1", "m2"]
    assert _skips(tmp_path / "out") == [(SHARD, None, f"corrupt tar header at byte {start}")]


def test_unreadable_tar_is_one_skip(tmp_path, jpeg_bytes, make_shards, three):
    folder = make_shards(tmp_path / "in", three())
    (folder / "imagenet22k-train-0001.tar").write_bytes(b"this is not a tar file" * 50)
    prepare("wds", folder, tmp_path / "out", parallel=False)
    assert len(read_manifest(tmp_path / "out")) == 3
    [(shard, key, reason)] = _skips(tmp_path / "out")
    assert (shard, key) == ("imagenet22k-train-0001.tar", None) and reason.startswith("not a readable tar")


def test_bad_samples_are_skipped_counted_and_named(tmp_path, jpeg_bytes, caplog, make_shards, make_sample):
    members = (
        make_sample("a", 0, jpeg_bytes)
        + make_sample("noimg", 1, b"definitely not an image")
        + make_sample("nocls", None, jpeg_bytes)
        + [("x.jpg", jpeg_bytes), ("y.jpg", jpeg_bytes), ("y.cls", b"1"), ("x.cls", b"1")]
        + make_sample("badcls", "seven", jpeg_bytes)
    )
    folder = make_shards(
        tmp_path / "in", members, make_sample("a", 3, jpeg_bytes) + make_sample("b", 4, jpeg_bytes)
    )
    assert main(["prepare", "wds", str(folder), "--out", str(tmp_path / "out")]) == 0
    assert read_manifest(tmp_path / "out").key.tolist() == ["a", "y", "b"]
    reasons = {key: reason for _, key, reason in _skips(tmp_path / "out")}
    assert reasons["noimg"].startswith("jpg member does not open as an image")
    assert reasons["nocls"] == "no cls member" and reasons["badcls"].startswith("cls is not")
    assert reasons["x"] == "key repeats non-contiguously in this shard"  # x's first part lacks cls too
    assert reasons["a"] == f"duplicate key (first in {SHARD})"
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # ONE warning
    assert "skipped 6 bad sample(s)" in warning  # noimg, nocls, badcls, a and both parts of x
    assert f"{SHARD} noimg: jpg member does not open as an image (UnidentifiedImageError)" in warning


def test_strict_stops_with_one_line_naming_the_shard(
    tmp_path, jpeg_bytes, capsys, make_shards, make_sample, three
):
    folder = make_shards(tmp_path / "in", three(), make_sample("z", None, jpeg_bytes))
    assert main(["prepare", "wds", str(folder), "--out", str(tmp_path / "out"), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "streamssl prepare: error: imagenet22k-train-0001.tar, key z: no cls member (--strict)"
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_imagefolder_non_image_file_is_skipped_or_strict(image_folder, tmp_path, capsys):
    (image_folder / "dog" / "notes.txt").write_text("not an image")
    info = prepare("imagefolder", image_folder, tmp_path / "out", parallel=False)
    assert info["num_samples"] == 6 and len(info["skipped"]) == 1
    skip = info["skipped"][0]
    assert skip["shard"] == "dog/notes.txt" and skip["reason"].startswith("not an image")
    assert main(["prepare", "imagefolder", str(image_folder), "--out", str(tmp_path / "s"), "--strict"]) == 2
    assert "dog/notes.txt" in capsys.readouterr().err


def test_bad_idx_file_is_a_data_error(idx_dir, tmp_path, capsys):
    (idx_dir / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    assert main(["prepare", "fashion-mnist", str(idx_dir), "--out", str(tmp_path / "o")]) == 2
    assert "train-labels-idx1-ubyte.gz" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope", "x"], "SOURCE: unknown source 'nope'"),
        (["cifar10", "/no/such/dir"], "PATH: /no/such/dir does not exist"),
        (["cifar10"], "PATH: cifar10 needs"),
        (["imagefolder", "{empty}"], "PATH: {empty} holds no class sub-folders"),
        (["wds", "{empty}"], "PATH: no *.tar shards in {empty}"),
        (["fashion-mnist", "{empty}"], "PATH: {empty} has no train-images-idx3-ubyte[.gz]"),
        (["cifar100", "{empty}"], "PATH: {empty}/meta is missing"),
        (["synthetic", "--classes", "0"], "--classes: must be an integer >= 1, got 0"),
        (["synthetic", "{empty}"], "PATH: the synthetic source takes no input path"),
        (["cifar10", "{empty}", "--classes", "3"], "--classes: not an option of cifar10"),
        (["synthetic", "--shard-size", "0"], "--shard-size: must be an integer >= 1, got 0"),
        (["synthetic", "--test-path", "{empty}"], "--test-path: synthetic brings its own test split"),
        (["imagefolder", "{empty}", "--test-path", "/no/where"], "--test-path: /no/where does not exist"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["prepare", *[a.replace("{empty}", str(empty)) for a in args], "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.replace("{empty}", str(empty)) in err


def test_load_dataset_info_names_the_folder(tmp_path):
    with pytest.raises(Exception, match="not a prepared dataset"):
        load_dataset_info(tmp_path)


def test_no_valid_sample_at_all_is_an_error(tmp_path, make_shards, make_sample, capsys):
    folder = make_shards(tmp_path / "in", make_sample("a", 0, b"not an image"))
    assert main(["prepare", "wds", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "wds: no valid samples (1 skipped; first: imagenet22k-train-0000.tar a:" in capsys.readouterr().err
