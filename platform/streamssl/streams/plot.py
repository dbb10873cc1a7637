"""The class at each stream position, one panel per stream (the demo's picture of the streams)."""

from __future__ import annotations

import numpy as np

from streamssl import fsio
from streamssl.streams.layout import index_column, stream_info

_BINS = 400  # position bins per panel


def plot_stream_classes(stream_dirs: list[str], out_png: str, class_names: list[str] | None = None) -> str:
    """Write a PNG with one panel per stream: the share of each class along the stream.

    Each panel is a raster, class id (rows) against stream position (columns, binned), shaded
    by the fraction of the bin's samples in that class, so blurred boundaries show as a fade
    and iid as a uniform grey.

    Args:
        stream_dirs: stream folders, one panel each (top to bottom).
        out_png: output path.
        class_names: row labels (default: the first stream's class names, when <= 20 classes).

    Returns:
        out_png.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(stream_dirs), 1, figsize=(10, 1.9 * len(stream_dirs) + 0.6), squeeze=False)
    for ax, stream_dir in zip(axes[:, 0], stream_dirs):
        info = stream_info(stream_dir)
        labels = index_column(stream_dir, "label")
        share = class_share(labels, _BINS)
        ax.imshow(share, aspect="auto", interpolation="nearest", cmap="Blues", vmin=0, vmax=1,
                  extent=(0, len(labels), share.shape[0] - 0.5, -0.5))
        ax.set_title(f"{info['kind']}  ({len(labels):,} samples, seed {info['seed']})",
                     fontsize=9, loc="left")
        ax.set_ylabel("class", fontsize=8)
        _label_classes(ax, class_names or info.get("class_names"), share.shape[0])
    axes[-1, 0].set_xlabel("stream position")
    fig.tight_layout()
    with fsio.atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=130)
    plt.close(fig)
    return out_png


def class_share(labels: np.ndarray, bins: int) -> np.ndarray:
    """(C, bins) fraction of each position bin's samples in each class (C = max label + 1)."""
    num_classes = int(labels.max(initial=-1)) + 1
    bins = max(1, min(bins, len(labels)))
    column = np.arange(len(labels)) * bins // max(len(labels), 1)
    counts = np.bincount(labels * bins + column, minlength=num_classes * bins).reshape(num_classes, bins)
    return counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)


def _label_classes(ax, class_names: list[str] | None, num_classes: int) -> None:
    if class_names and num_classes <= 20:
        ax.set_yticks(range(num_classes), class_names[:num_classes], fontsize=7)
    ax.tick_params(axis="x", labelsize=8)
