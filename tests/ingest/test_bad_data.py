"""Bad data is skipped, counted and named (or stops --strict with exit 2); bad arguments exit 2."""

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from streamssl.cli import main
from streamssl.errors import DataError
from streamssl.ingest import load_dataset_info, load_images, prepare, read_manifest, read_samples
from streamssl.ingest.writer import ShardWriter

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
        (["synthetic", "--out", "{file}"], "--out: {file} is not a folder and cannot become one"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message, tmp_path, capsys):
    empty, file = tmp_path / "empty", tmp_path / "file"
    empty.mkdir()
    file.write_text("not a folder")
    argv = ["prepare", *[a.replace("{empty}", str(empty)).replace("{file}", str(file)) for a in args]]
    assert main(argv + ["--out", str(tmp_path / "out")] if "--out" not in args else argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.replace("{empty}", str(empty)).replace("{file}", str(file)) in err


def test_load_dataset_info_names_the_folder(tmp_path):
    with pytest.raises(Exception, match="not a prepared dataset"):
        load_dataset_info(tmp_path)


def test_no_valid_sample_at_all_is_an_error(tmp_path, make_shards, make_sample, capsys):
    folder = make_shards(tmp_path / "in", make_sample("a", 0, b"not an image"))
    assert main(["prepare", "wds", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "wds: no valid samples (1 skipped; first: imagenet22k-train-0000.tar a:" in capsys.readouterr().err


# ---------------------------------------------------------------- images that open but do not decode


def _truncated_png(seed=9) -> bytes:
    """A PNG whose header (size, mode) is intact and whose pixel data stops halfway."""
    buf = io.BytesIO()
    noise = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)  # IDAT: ~all bytes
    Image.fromarray(noise).save(buf, format="PNG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def test_truncated_png_in_an_image_folder_is_skipped_and_named(image_folder, tmp_path):
    (image_folder / "cat" / "c_cut.png").write_bytes(_truncated_png())
    assert Image.open(image_folder / "cat" / "c_cut.png").size == (16, 16)  # the header opens
    info = prepare("imagefolder", image_folder, tmp_path / "out", parallel=False)
    [skip] = info["skipped"]
    assert skip["shard"] == "cat/c_cut.png" and "truncated" in skip["reason"]
    assert info["num_samples"] + len(info["skipped"]) == 7  # valid samples in = out + skipped
    manifest = read_manifest(tmp_path / "out")
    assert len(manifest) == 6 and "cat/c_cut.png" not in {json.loads(s["json"])["id"]
                                                         for s in read_samples(tmp_path / "out", manifest)}
    for shard in (tmp_path / "out").glob("shard-*.tar"):  # every shard whole, none left half-written
        with tarfile.open(shard) as tf:
            assert len(tf.getmembers()) == 3 * (manifest.shard == shard.name).sum()
    assert not list((tmp_path / "out").glob("*.tmp")) and not list(tmp_path.glob(".out.partial-*"))


def test_wds_verify_decodes_every_image_and_no_verify_admits_it(tmp_path, jpeg_bytes, make_shards, make_sample):
    cut = jpeg_bytes[: len(jpeg_bytes) - 40]  # JPEG header intact, entropy data cut off
    folder = make_shards(tmp_path / "in", make_sample("a", 0, jpeg_bytes) + make_sample("cut", 1, cut)
                         + make_sample("png", 1, _truncated_png(), ext="png"))
    info = prepare("wds", folder, tmp_path / "out", parallel=False)
    assert read_manifest(tmp_path / "out").key.tolist() == ["a"]
    reasons = {s["key"]: s["reason"] for s in info["skipped"]}
    assert reasons["cut"].startswith("jpg member does not decode (OSError: image file is truncated")
    assert reasons["png"].startswith("png member does not decode")
    unverified = prepare("wds", folder, tmp_path / "nv", verify=False, parallel=False)
    assert unverified["num_samples"] == 3 and unverified["skipped"] == []


def test_eval_images_that_do_not_decode_are_left_out_and_named(tmp_path, jpeg_bytes, make_shards, make_sample):
    folder = make_shards(tmp_path / "in", make_sample("a", 0, jpeg_bytes) + make_sample("bad", 1, b"junk")
                         + make_sample("b", 1, jpeg_bytes))
    prepare("wds", folder, tmp_path / "out", verify=False, parallel=False)
    skipped = []
    images, labels = load_images(tmp_path / "out", None, skipped=skipped)
    assert images.shape == (2, 12, 16, 3) and labels.tolist() == [0, 1]
    [record] = skipped
    assert (record["shard"], record["key"]) == (SHARD, "bad") and record["reason"].startswith("image does not")
    with pytest.raises(DataError, match=f"{SHARD}, key bad: image does not decode"):
        load_images(tmp_path / "out", None)  # no list to record in: one line naming shard and key


# ---------------------------------------------------------------- no half-written dataset


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_prepare_that_fails_midway_leaves_the_previous_dataset_intact(tmp_path, monkeypatch, error):
    out = tmp_path / "out"
    prepare("synthetic", None, out, classes=2, samples_per_class=5, size=8, shard_size=3)
    before = _snapshot(out)
    calls = []
    real_write = ShardWriter.write

    def failing_write(self, key, members):
        calls.append(key)
        if len(calls) == 6:  # two shards are complete by now
            raise error
        return real_write(self, key, members)

    monkeypatch.setattr(ShardWriter, "write", failing_write)
    with pytest.raises(type(error)):
        prepare("synthetic", None, out, classes=3, samples_per_class=5, size=8, shard_size=3)
    assert _snapshot(out) == before and load_dataset_info(out)["num_classes"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no partial dataset beside it either
    monkeypatch.undo()
    with pytest.raises(type(error)):  # a fresh target: nothing at all is left behind
        monkeypatch.setattr(ShardWriter, "write", failing_write)
        calls.clear()
        prepare("synthetic", None, tmp_path / "new", classes=3, samples_per_class=5, size=8, shard_size=3)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_strict_prepare_leaves_the_previous_dataset_intact(image_folder, tmp_path):
    out = tmp_path / "out"
    prepare("imagefolder", image_folder, out, parallel=False)
    before = _snapshot(out)
    (image_folder / "cat" / "c_cut.png").write_bytes(_truncated_png())
    with pytest.raises(DataError, match="cat/c_cut.png"):
        prepare("imagefolder", image_folder, out, parallel=False, strict=True)
    assert _snapshot(out) == before


def test_a_new_prepare_replaces_the_old_dataset_whole(tmp_path):
    out = tmp_path / "out"
    prepare("synthetic", None, out, classes=2, samples_per_class=10, size=8, shard_size=4)
    (out / "streams").mkdir()  # something a run put there stays
    stale = tmp_path / f".out.partial-{2**31 - 2}-x"  # left by a killed prepare (no such process)
    stale.mkdir()
    info = prepare("synthetic", None, out, classes=3, samples_per_class=2, size=8, shard_size=4)
    assert info["num_samples"] == 6 and load_dataset_info(out)["num_classes"] == 3
    assert sorted(p.name for p in out.glob("shard-*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    assert len(read_manifest(out / "test")) == load_dataset_info(out / "test")["num_samples"]
    assert (out / "streams").is_dir() and not stale.exists()
