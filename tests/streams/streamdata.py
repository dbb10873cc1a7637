"""Tiny prepared datasets written by hand, following docs/formats.md (no ingest needed)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from streamssl.streams.tario import ShardWriter


def sample_image(index: int, label: int, size: int, gray: bool) -> np.ndarray:
    """A (size, size[, 3]) uint8 image whose first pixel encodes (index, label)."""
    shape = (size, size) if gray else (size, size, 3)
    image = np.full(shape, 40 + 20 * label, dtype=np.uint8)
    image.reshape(-1)[:3] = [index % 256, index // 256, label]
    return image


def write_prepared(out: Path, labels, *, size: int = 8, shard_size: int = 10, gray: bool = False,
                   coarse: bool = True) -> Path:
    """Write shards + manifest.parquet + dataset.json for the given labels (source order)."""
    out.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels, dtype=np.int64)
    rows = []
    for start in range(0, len(labels), shard_size):
        shard = f"shard-{start // shard_size:06d}.tar"
        writer = ShardWriter(str(out / shard))
        for i in range(start, min(start + shard_size, len(labels))):
            buf = io.BytesIO()
            Image.fromarray(sample_image(i, int(labels[i]), size, gray)).save(buf, format="PNG")
            key = f"s{i:05d}"
            offset, nbytes = writer.write(key, {"png": buf.getvalue(), "cls": str(labels[i]).encode(),
                                                "json": json.dumps({"id": i}).encode()})
            rows.append({"key": key, "index": i, "shard": shard, "offset": offset, "nbytes": nbytes,
                         "size": len(buf.getvalue()), "ext": "png", "label": int(labels[i]),
                         "label_name": f"c{labels[i]}", "coarse_label": int(labels[i]) // 2,
                         "coarse_label_name": f"g{labels[i] // 2}", "width": size, "height": size,
                         "difficulty": float((i * 7) % 11)})
        writer.close()
    manifest = pd.DataFrame(rows).astype({"width": "int32", "height": "int32"})
    if not coarse:
        manifest = manifest.drop(columns=["coarse_label", "coarse_label_name"])
    manifest.to_parquet(out / "manifest.parquet", index=False)
    num_classes = int(labels.max()) + 1
    info = {"num_samples": len(labels), "num_classes": num_classes,
            "class_names": [f"c{c}" for c in range(num_classes)],
            "class_counts": np.bincount(labels).tolist(), "source": "test", "skipped": [],
            "shard_root": ".", "image_ext": "png"}
    (out / "dataset.json").write_text(json.dumps(info))
    return out
