"""JPEG stream samples decode through simplejpeg into the batch array, pixel-identical to PIL;
an image that does not decode is marked (zeros + a reason), or stops --strict naming shard and key."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from streamssl.errors import DataError
from streamssl.streams import decode
from streamssl.streams.tario import ShardWriter


def _jpeg(mode: str, size=(24, 16), seed=0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _shard(tmp_path, images: list[bytes]) -> list[tuple[str, bytes]]:
    path = tmp_path / "stream-000000.tar"
    writer = ShardWriter(str(path))
    for pos, data in enumerate(images):
        writer.write(f"{pos:010d}", {"jpg": data, "cls": b"1", "json": json.dumps({"key": f"k{pos}"}).encode()})
    writer.close()
    return [(str(path), path.read_bytes())]


@pytest.mark.parametrize("modes", [("RGB", "L", "RGB"), ("RGB", "CMYK")])
def test_simplejpeg_and_pil_give_identical_batches(tmp_path, monkeypatch, modes):
    buffers = _shard(tmp_path, [_jpeg(mode, seed=i) for i, mode in enumerate(modes)])
    positions = np.arange(len(modes))
    fast = decode.decode_samples(buffers, positions)
    monkeypatch.setattr(decode, "simplejpeg", None)
    slow = decode.decode_samples(buffers, positions)
    assert fast["image"].shape == (len(modes), 16, 24, 3) and fast["image"].dtype == np.uint8
    np.testing.assert_array_equal(fast["image"], slow["image"])
    assert list(fast["key"]) == [f"k{i}" for i in range(len(modes))]


def test_jpeg_header_only_for_what_simplejpeg_decodes_natively():
    assert decode._jpeg_header({"jpg": _jpeg("RGB")}, None).size == (24, 16)
    assert decode._jpeg_header({"jpg": _jpeg("RGB")}, (16, 24)) is not None  # the native (H, W)
    assert decode._jpeg_header({"jpg": _jpeg("RGB")}, (8, 8)) is None  # resized: PIL's path
    assert decode._jpeg_header({"jpg": _jpeg("CMYK")}, None) is None
    assert decode._jpeg_header({"png": b"\x89PNG"}, None) is None
    assert decode._jpeg_header({"jpg": b"not a jpeg"}, None) is None


@pytest.mark.parametrize("fast", [True, False])
def test_truncated_jpeg_is_marked_or_a_strict_error_naming_shard_and_key(tmp_path, monkeypatch, fast):
    if not fast:
        monkeypatch.setattr(decode, "simplejpeg", None)
    good = _jpeg("RGB", seed=1)
    buffers = _shard(tmp_path, [_jpeg("RGB")[:200], good, b"not an image at all"])
    batch = decode.decode_samples(buffers, np.arange(3))
    assert batch["image"].shape == (3, 16, 24, 3)
    assert [bool(r) for r in batch["skip"]] == [True, False, True]
    assert batch["skip"][0].startswith("image does not decode") and not batch["image"][0].any()
    np.testing.assert_array_equal(batch["image"][1], np.asarray(Image.open(io.BytesIO(good)).convert("RGB")))
    assert list(batch["key"]) == ["k0", "k1", "k2"]
    with pytest.raises(DataError, match=r"stream-000000.tar, key k0: image does not decode"):
        decode.decode_samples(buffers, np.arange(3), strict=True)


def test_every_image_bad_still_gives_a_batch(tmp_path):
    batch = decode.decode_samples(_shard(tmp_path, [b"junk", b"more junk"]), np.arange(2), size=(4, 5))
    assert batch["image"].shape == (2, 4, 5, 3) and all(batch["skip"])
