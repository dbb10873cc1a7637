"""Reading prepared datasets back: samples by offset and decoded image subsets."""

import io

import numpy as np
import pytest
from PIL import Image

from streamssl.commands.prepare import DEFAULT_SHARD_SIZE as CLI_DEFAULT
from streamssl.errors import ConfigError, DataError
from streamssl.ingest import DEFAULT_SHARD_SIZE, load_images, prepare, read_manifest, read_samples
from streamssl.ingest.synthetic import make_split


@pytest.fixture
def synthetic_dir(tmp_path):
    prepare(
        "synthetic", None, tmp_path / "syn", classes=3, samples_per_class=8, size=12, seed=5, shard_size=7
    )
    return tmp_path / "syn"


def test_read_samples_by_offset_in_any_row_order(synthetic_dir):
    m = read_manifest(synthetic_dir)
    rows = m.iloc[[20, 3, 9, 3]]  # several shards, out of order, a repeat
    samples = read_samples(synthetic_dir, rows)
    assert [s["__key__"] for s in samples] == rows.key.tolist()
    assert [int(s["cls"]) for s in samples] == rows.label.tolist()
    assert [len(s["png"]) for s in samples] == rows["size"].tolist()


def test_load_images_decodes_the_source_pixels(synthetic_dir):
    split = make_split(3, 8, 12, seed=5, stream=0)
    images, labels = load_images(synthetic_dir, 10, seed=1)
    assert images.shape == (10, 12, 12, 3) and images.dtype == np.uint8 and labels.dtype == np.int64
    again, _ = load_images(synthetic_dir, 10, seed=1)
    other, _ = load_images(synthetic_dir, 10, seed=2)
    assert np.array_equal(images, again) and not np.array_equal(images, other)
    every, all_labels = load_images(synthetic_dir, None)
    np.testing.assert_array_equal(every, split.images)
    np.testing.assert_array_equal(all_labels, split.labels["label"])
    # the subset is a sorted subset of the source order
    assert all(any(np.array_equal(img, e) for e in every) for img in images)


def test_load_images_gray_rgba_resize_and_mixed_sizes(image_folder, tmp_path):
    prepare("imagefolder", image_folder, tmp_path / "out", parallel=False)
    with pytest.raises(ConfigError, match="different sizes; pass size="):
        load_images(tmp_path / "out", None)
    images, labels = load_images(tmp_path / "out", None, size=10)
    assert images.shape == (6, 10, 10, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    gray = np.asarray(
        Image.open(image_folder / "cat" / "a_gray.png").resize((10, 10), Image.Resampling.BILINEAR)
    )
    np.testing.assert_array_equal(images[0], np.repeat(gray[..., None], 3, axis=-1))
    rgba = np.asarray(
        Image.open(image_folder / "dog" / "c_rgba.png")
        .convert("RGB")
        .resize((10, 10), Image.Resampling.BILINEAR)
    )
    np.testing.assert_array_equal(images[2], rgba)  # alpha dropped


def test_load_images_label_column_and_errors(cifar100_dir, tmp_path):
    prepare("cifar100", cifar100_dir, tmp_path / "c")
    _, coarse = load_images(tmp_path / "c", None, label_column="coarse_label")
    assert coarse.tolist() == [0, 19, 1, 8, 1, 12]
    with pytest.raises(ConfigError, match="label_column: 'nope'"):
        load_images(tmp_path / "c", 2, label_column="nope")
    with pytest.raises(ConfigError, match="no manifest.parquet"):
        load_images(tmp_path, 2)


def test_stale_manifest_is_detected(synthetic_dir):
    m = read_manifest(synthetic_dir)
    rows = m.iloc[[1]].copy()
    rows["offset"] = m.offset.iloc[2]  # points at another sample
    with pytest.raises(DataError, match="manifest expects key"):
        read_samples(synthetic_dir, rows)


def test_cli_and_library_share_the_default_shard_size():
    assert CLI_DEFAULT == DEFAULT_SHARD_SIZE == 10_000


def test_png_members_are_real_pngs(synthetic_dir):
    sample = read_samples(synthetic_dir, read_manifest(synthetic_dir).iloc[[0]])[0]
    assert Image.open(io.BytesIO(sample["png"])).format == "PNG"
