"""Stream read throughput vs plain webdataset, and planning seq-bl at ImageNet-21K scale.

(a) images/s of `read_stream` (read + decode to uint8 (H, W, 3), stream order kept) against
plain `webdataset` iteration over the same shards in one process decoding to the same arrays,
for 32x32 PNG and 256x256 JPEG shards made in a temp dir; (b) wall time and peak memory of loading
a 13.2M-row label parquet and planning seq-bl over 21,841 classes, in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from streamssl import fsio

# VmHWM (peak RSS) restarts at exec, unlike ru_maxrss, which a child inherits from its parent
_PLAN_SCRIPT = """
import sys, time
import numpy as np, pyarrow.parquet as pq
from streamssl.streams import plan_stream
def hwm():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
    return int(line.split()[1]) * 1024
base = hwm()
t = time.perf_counter()
labels = pq.read_table(sys.argv[1], columns=["label"])["label"].to_numpy()
plan = plan_stream(labels, "seq-bl", seed=0)
wall = time.perf_counter() - t
print(wall, hwm(), hwm() - base, len(plan))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--png", type=int, default=8000, help="32x32 PNG images")
    parser.add_argument("--jpeg", type=int, default=3000, help="256x256 JPEG images")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per reader (best is kept)")
    parser.add_argument("--plan-samples", type=int, default=13_200_000)
    parser.add_argument("--plan-classes", type=int, default=21_841)
    parser.add_argument("--skip-plan", action="store_true")


def run(args: argparse.Namespace) -> int:
    from streamssl.ray_setup import init_ray

    init_ray()
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-execution INFO lines
    with tempfile.TemporaryDirectory(prefix="streamssl-bench-") as tmp:
        for fmt, n, size in (("png", args.png, 32), ("jpg", args.jpeg, 256)):
            stream_dir = os.path.join(tmp, fmt)
            write_bench_stream(stream_dir, n, size, fmt)
            _report_read(stream_dir, fmt, size, args.repeats)
        if not args.skip_plan:
            _report_plan(tmp, args.plan_samples, args.plan_classes)
    return 0


def write_bench_stream(stream_dir: str, n: int, size: int, fmt: str, shard_size: int = 1000) -> None:
    """A stream folder (stream shards, index.parquet, stream.json) of n textured images."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from streamssl.streams.tario import ShardWriter

    fsio.makedirs(stream_dir)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rows = {"pos": [], "key": [], "label": [], "shard": [], "offset": [], "nbytes": []}
    for start in range(0, n, shard_size):
        shard = f"stream-{start // shard_size:06d}.tar"
        writer = ShardWriter(fsio.join(stream_dir, shard))
        for pos in range(start, min(n, start + shard_size)):
            freq = rng.uniform(2, 12, 3)
            image = 127 + 100 * np.sin(freq[None, None] * (xx + yy * freq[0])[..., None] * 3.1)
            image = (image + rng.normal(0, 12, image.shape)).clip(0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="PNG" if fmt == "png" else "JPEG", quality=90)
            key, label = f"b{pos:07d}", pos % 10
            meta = json.dumps({"key": key, "pos": pos}).encode()
            offset, nbytes = writer.write(f"{pos:010d}", {fmt: buf.getvalue(), "cls": str(label).encode(),
                                                          "json": meta})
            for name, value in zip(rows, (pos, key, label, shard, offset, nbytes)):
                rows[name].append(value)
        writer.close()
    with fsio.atomic_path(fsio.join(stream_dir, "index.parquet")) as tmp:
        pq.write_table(pa.table(rows), tmp)
    info = {"kind": "bench", "seed": 0, "num_samples": n}
    fsio.write_text(fsio.join(stream_dir, "stream.json"), json.dumps(info))


def _time_ray(stream_dir: str, concurrency: int | None = None,
              batch_size: int | None = None) -> tuple[float, np.ndarray]:
    """Seconds to iterate the whole stream (None: the blocks as read; an int: fixed batches)."""
    from streamssl.streams import read_stream

    t, pos = time.perf_counter(), []
    for batch in read_stream(stream_dir, concurrency=concurrency).iter_batches(
            batch_size=batch_size, batch_format="numpy", prefetch_batches=4):
        assert batch["image"].dtype == np.uint8 and batch["image"].shape[-1] == 3
        pos.append(batch["pos"])
    return time.perf_counter() - t, np.concatenate(pos)


def _simplejpeg_handler(key: str, data: bytes):
    """A webdataset decoder for JPEG members via simplejpeg (others fall through to "rgb8")."""
    import simplejpeg

    return simplejpeg.decode_jpeg(data, colorspace="RGB") if key.endswith((".jpg", ".jpeg")) else None


def _time_webdataset(stream_dir: str, simplejpeg: bool = False) -> tuple[float, int]:
    import webdataset as wds

    shards = [fsio.join(stream_dir, f) for f in fsio.listdir(stream_dir) if f.endswith(".tar")]
    t, count = time.perf_counter(), 0
    handlers = [_simplejpeg_handler, "rgb8"] if simplejpeg else ["rgb8"]
    for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False).decode(*handlers):
        image = sample.get("png", sample.get("jpg"))
        assert image.dtype == np.uint8 and image.shape[-1] == 3 and isinstance(sample["cls"], int)
        count += 1
    return time.perf_counter() - t, count


def _report_read(stream_dir: str, fmt: str, size: int, repeats: int) -> None:
    _time_ray(stream_dir)  # warm-up: Ray worker start and imports are not throughput
    best = {"blocks": np.inf, "batches": np.inf, "wds": np.inf, "wds_sj": np.inf}
    order_ok = True
    for _ in range(repeats):  # interleaved, so load from other processes hits all of them alike
        for name, batch_size in (("blocks", None), ("batches", 256)):
            seconds, pos = _time_ray(stream_dir, batch_size=batch_size)
            best[name] = min(best[name], seconds)
            order_ok &= bool(np.array_equal(pos, np.arange(len(pos))))
        seconds, n = _time_webdataset(stream_dir)
        best["wds"] = min(best["wds"], seconds)
        if fmt == "jpg":  # the same decoder as read_stream's JPEG path: isolates what Ray adds
            best["wds_sj"] = min(best["wds_sj"], _time_webdataset(stream_dir, simplejpeg=True)[0])
    rate = {name: n / seconds for name, seconds in best.items()}
    print(f"(a) {size}x{size} {fmt.upper()}, {n} images, best of {repeats}: webdataset (1 process, its PIL "
          f"decoder) {rate['wds']:,.0f} img/s; read_stream {rate['blocks']:,.0f} img/s as read "
          f"(ratio {rate['blocks'] / rate['wds']:.2f}x), {rate['batches']:,.0f} img/s in batches of 256 "
          f"(ratio {rate['batches'] / rate['wds']:.2f}x); stream order preserved: {order_ok}")
    if fmt == "jpg":
        print(f"    webdataset with simplejpeg as its decoder: {rate['wds_sj']:,.0f} img/s "
              f"(read_stream / that: {rate['blocks'] / rate['wds_sj']:.2f}x)")
    cpus = os.cpu_count() or 1
    levels = [c for c in (1, 2, 4, 8, 16, 32) if c <= cpus]
    scaling = ", ".join(f"{c}: {n / _time_ray(stream_dir, c)[0]:,.0f}" for c in levels)
    print(f"    read tasks at once ({cpus} CPUs) -> img/s: {scaling}")


def _report_plan(tmp: str, num_samples: int, num_classes: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(tmp, "labels.parquet")
    # long-tailed class sizes like ImageNet-21K (a few large classes, many small ones)
    weights = np.random.default_rng(0).pareto(1.5, num_classes) + 0.2
    labels = np.random.default_rng(1).choice(num_classes, num_samples, p=weights / weights.sum())
    with fsio.atomic_path(path) as tmp:
        pq.write_table(pa.table({"label": labels.astype(np.int64)}), tmp)
    del labels
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", _PLAN_SCRIPT, path], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    wall, peak, delta, length = float(out[0]), int(out[1]), int(out[2]), int(out[3])
    print(f"(b) load labels parquet + plan seq-bl, {num_samples:,} samples / {num_classes:,} classes: "
          f"{wall:.1f} s, peak RSS {peak / 2**30:.2f} GiB ({delta / 2**30:.2f} GiB above the "
          f"imported interpreter), plan length {length:,}")
