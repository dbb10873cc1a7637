"""A text summary of a materialized stream: kind, length, segments, boundary blending."""

from __future__ import annotations

import numpy as np

from streamssl.streams.layout import index_column, stream_info

_LISTED = 20  # segments listed one by one; longer streams get a count summary


def stream_layout(stream_dir: str) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """(stream.json, (L,) labels in stream order, (L,) segment of each sample's class,
    (S,) segment lengths) with segments = runs of `classes_per_segment` classes in order of
    first appearance."""
    info = stream_info(stream_dir)
    labels = index_column(stream_dir, "label")
    order = np.asarray(info["class_order"], dtype=np.int64)
    lookup = np.zeros(int(order.max()) + 1 if len(order) else 1, dtype=np.int64)
    lookup[order] = np.arange(len(order)) // int(info.get("classes_per_segment", 1))
    segment = lookup[labels]
    return info, labels, segment, np.bincount(segment, minlength=int(segment.max(initial=-1)) + 1)


def blend_stats(segment: np.ndarray, sizes: np.ndarray) -> dict:
    """How far samples sit from their own segment's span.

    Returns:
        {"outside": samples outside their segment's span, "max_distance": the farthest such
        sample's distance to the nearest boundary, "edge_rate": the outside rate among the
        positions right next to a boundary (s_c - 1 and s_c)}.
    """
    ends = np.cumsum(sizes)
    home = np.searchsorted(ends, np.arange(len(segment)), side="right")  # span each position is in
    outside = segment != home
    bounds = ends[:-1]
    if len(bounds) == 0 or not outside.any():
        return {"outside": int(outside.sum()), "max_distance": 0, "edge_rate": 0.0}
    pos = np.flatnonzero(outside)
    nearest = np.abs(pos[:, None] - bounds[None, :] + 0.5).min(axis=1) if len(pos) * len(bounds) < 5e7 \
        else _nearest_distance(pos, bounds)
    edge = np.concatenate([bounds - 1, bounds])
    return {"outside": int(outside.sum()), "max_distance": int(nearest.max() + 0.5),
            "edge_rate": float(outside[edge].mean())}


def _nearest_distance(pos: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    i = np.searchsorted(bounds, pos).clip(1, len(bounds) - 1)
    return np.minimum(np.abs(pos - bounds[i - 1] + 0.5), np.abs(pos - bounds[i] + 0.5))


def summarize_stream(stream_dir: str) -> str:
    """Kind, length, classes, per-segment counts and boundary blending of a stream, as text."""
    info, labels, segment, sizes = stream_layout(stream_dir)
    names = info.get("class_names") or []
    lines = [f"{info['kind']} stream {stream_dir}: {len(labels):,} samples, {info['num_classes']} classes "
             f"({info['label_column']}), seed {info['seed']}, plan sha256 {info['plan_sha256'][:12]}"]
    if info["kind"] == "iid":
        runs = np.diff(np.flatnonzero(np.diff(labels, prepend=-1, append=-1) != 0))
        lines.append(f"  mixed: mean class run {runs.mean():.2f}, longest {runs.max()}")
    else:
        lines.append(f"  {len(sizes)} segments: " + _segment_text(info, sizes, names))
        stats = blend_stats(segment, sizes)
        if stats["outside"] == 0:
            lines.append("  boundaries: sharp (every sample inside its segment)")
        else:
            lines.append(f"  boundaries: {stats['outside']:,} samples outside their segment, all within "
                         f"{stats['max_distance']:,} positions of a boundary; swapped right at a "
                         f"boundary: {stats['edge_rate']:.0%}")
    lines.append(f"  skipped: {len(info.get('skipped', []))}")
    if info.get("virtual"):
        lines.append(f"  virtual: no image copied; reads fetch byte ranges from the shards of {info['dataset_dir']}")
    return "\n".join(lines)


def _segment_text(info: dict, sizes: np.ndarray, names: list[str]) -> str:
    k = int(info.get("classes_per_segment", 1))
    if len(sizes) > _LISTED:
        return f"lengths {sizes.min():,}..{sizes.max():,} (mean {sizes.mean():,.1f})"
    order = info["class_order"]
    parts = []
    for s, size in enumerate(sizes):
        classes = order[s * k:(s + 1) * k]
        label = "+".join(names[c] if c < len(names) else str(c) for c in classes) if k <= 3 else \
            f"{len(classes)} classes"
        parts.append(f"{label} {size:,}")
    return ", ".join(parts)
