"""High-bit-depth images reach 8 bits scaled, not clipped: at prepare, in eval sets and in streams."""

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from streamssl.ingest import decode_rgb, load_images, prepare
from streamssl.ingest.pixels import eight_bit
from streamssl.streams.decode import decode_samples
from streamssl.streams.tario import ShardWriter


def png16(values: np.ndarray) -> bytes:
    """A 16-bit PNG (gray (H, W) or RGB (H, W, 3)), written by hand: PIL cannot save 16-bit RGB."""
    h, w = values.shape[:2]
    channels = 1 if values.ndim == 2 else values.shape[2]
    rows = values.reshape(h, w * channels).astype(">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2}[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def tiff(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, format="TIFF")
    return buf.getvalue()


MID = np.full((4, 6), 32768, np.uint16)
RAMP = np.array([[0, 257, 65535, 32767]], np.uint16)  # exactly 0, 1, 255 and 127.498 -> 127


@pytest.mark.parametrize("data, mode", [
    (png16(MID), "I;16"),
    (tiff(MID.astype(np.int32)), "I"),
    (tiff(np.full((4, 6), 0.5, np.float32)), "F"),
    (tiff(np.full((4, 6), 127.6, np.float32)), "F"),  # F beyond [0, 1] is read on [0, 255]
])
def test_mid_grey_high_depth_gray_decodes_to_mid_grey(data, mode):
    assert Image.open(io.BytesIO(data)).mode == mode
    assert np.unique(decode_rgb(data)).tolist() in ([127], [128])
    assert decode_rgb(data).shape == (4, 6, 3)


def test_sixteen_bit_scaling_is_exact_and_rgb_is_scaled_too():
    assert np.asarray(eight_bit(Image.open(io.BytesIO(png16(RAMP))))).tolist() == [[0, 1, 255, 127]]
    rgb = np.stack([MID, np.full_like(MID, 65535), np.zeros_like(MID)], axis=-1)
    pixels = decode_rgb(png16(rgb))
    assert pixels[0, 0].tolist() in ([128, 255, 0], [127, 255, 0])
    assert decode_rgb(png16(MID), size=3).shape == (3, 3, 3)  # the resize path scales first
    assert np.unique(decode_rgb(png16(MID), size=3)).tolist() in ([127], [128])


def test_image_folder_of_high_depth_images_prepares_and_loads_mid_grey(tmp_path):
    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "in" / "b").mkdir()
    (tmp_path / "in" / "a" / "gray16.png").write_bytes(png16(MID))
    (tmp_path / "in" / "a" / "rgb16.png").write_bytes(png16(np.stack([MID] * 3, axis=-1)))
    (tmp_path / "in" / "b" / "int.tif").write_bytes(tiff(MID.astype(np.int32)))
    (tmp_path / "in" / "b" / "float.tif").write_bytes(tiff(np.full((4, 6), 0.5, np.float32)))
    info = prepare("imagefolder", tmp_path / "in", tmp_path / "out", parallel=False)
    assert info["num_samples"] == 4 and info["skipped"] == []
    assert all(abs(m - 0.5) < 0.003 for m in info["mean"])  # decoded stats: mid grey, not ~white
    images, _ = load_images(tmp_path / "out", None)
    assert images.shape == (4, 4, 6, 3) and set(np.unique(images).tolist()) <= {127, 128}


def test_stream_decode_scales_sixteen_bit_pngs(tmp_path):
    path = tmp_path / "stream-000000.tar"
    writer = ShardWriter(str(path))
    for pos, data in enumerate([png16(MID), png16(np.stack([MID] * 3, axis=-1))]):
        writer.write(f"{pos:010d}", {"png": data, "cls": b"0", "json": json.dumps({"key": f"k{pos}"}).encode()})
    writer.close()
    for size in (None, (2, 3)):
        batch = decode_samples([(str(path), path.read_bytes())], np.arange(2), size)
        assert not any(batch["skip"]) and set(np.unique(batch["image"]).tolist()) <= {127, 128}
