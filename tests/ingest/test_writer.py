"""Tar writer (ustar headers, offsets, determinism) and the PNG batch encoder."""

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from streamssl.ingest.pngenc import encode_png_batch
from streamssl.ingest.reader import split_fragment
from streamssl.ingest.writer import ShardWriter, tar_header


@pytest.mark.parametrize("shape", [(3, 28, 28), (3, 32, 32, 3), (3, 5, 7, 4), (2, 4, 6, 1)])
def test_png_batch_decodes_exactly(shape):
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for png, image in zip(encode_png_batch(images), images):
        decoded = np.asarray(Image.open(io.BytesIO(png)))
        assert decoded.shape == image.shape[:2] + (
            () if image.ndim == 2 or image.shape[2] == 1 else image.shape[2:]
        )
        np.testing.assert_array_equal(decoded.reshape(image.shape), image)


def test_png_grayscale_stays_one_channel():
    png = encode_png_batch(np.zeros((1, 28, 28), np.uint8))[0]
    assert Image.open(io.BytesIO(png)).mode == "L"


def test_tar_header_matches_tarfile_and_rejects_long_names():
    info = tarfile.TarInfo.frombuf(tar_header("abc_00000001.png", 1234), "utf-8", "surrogateescape")
    assert (info.name, info.size, info.mtime, info.mode, info.uid, info.type) == (
        "abc_00000001.png",
        1234,
        0,
        0o444,
        0,
        tarfile.REGTYPE,
    )
    with pytest.raises(ValueError, match="100 bytes"):
        tar_header("k" * 101, 1)


def _write(folder, n=5, max_count=2):
    with ShardWriter(folder, max_count=max_count) as writer:
        return [
            writer.write(f"k{i}", {"png": bytes([i]) * (100 + i), "cls": str(i).encode()}) for i in range(n)
        ]


def test_shard_writer_offsets_roll_over_and_readback(tmp_path):
    placed = _write(tmp_path)
    assert [p[0] for p in placed] == ["shard-000000.tar"] * 2 + ["shard-000001.tar"] * 2 + [
        "shard-000002.tar"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"shard-00000{i}.tar" for i in range(3)]
    for i, (shard, offset, nbytes) in enumerate(placed):
        data = (tmp_path / shard).read_bytes()[offset : offset + nbytes]
        assert split_fragment(data) == [(f"k{i}.cls", str(i).encode()), (f"k{i}.png", bytes([i]) * (100 + i))]
    with tarfile.open(tmp_path / "shard-000001.tar") as tf:  # a standard tar for any reader
        assert tf.getnames() == ["k2.cls", "k2.png", "k3.cls", "k3.png"]


def test_shard_writer_is_byte_deterministic(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write(tmp_path / "a")
    _write(tmp_path / "b")
    for name in ("shard-000000.tar", "shard-000002.tar"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
