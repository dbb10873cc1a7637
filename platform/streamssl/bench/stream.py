"""Stream read throughput vs plain webdataset, virtual vs materialized, ImageNet-21K-sized plans.

(a) images/s of `read_stream` (read + decode to uint8 (H, W, 3), stream order kept) against
plain `webdataset` iteration over the same shards in one process decoding to the same arrays,
for 32x32 PNG and 256x256 JPEG datasets made in a temp dir (seq streams over class-interleaved
sources), and of the virtual stream of the same plan (byte ranges read from the dataset's shards);
(b) wall time and peak memory of loading a 13.2M-row label parquet and planning seq-bl over
21,841 classes, in a fresh subprocess; (c) `stream --virtual` on a manifest of that size (its rows
point into the JPEG dataset's real shards) until the first stream batch is decoded, in fresh
subprocesses: starting a local Ray beside the index as `streamssl run` does, and joining a
running one.
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
from streamssl.errors import ConfigError

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

_FIRST_BATCH_SCRIPT = """
import sys, time
from streamssl.ray_setup import init_ray, init_ray_during
if sys.argv[3] == "running":
    init_ray()  # a running cluster: its start is paid once, not per stream
    time.sleep(15)  # and it is idle: its prestarted workers have finished starting
t = time.perf_counter()
from streamssl.streams.build import build_stream
from streamssl.streams import read_stream
def index():
    build_stream(sys.argv[1], sys.argv[2], kind="seq-bl", seed=0, progress=False, virtual=True)
    return time.perf_counter() - t
built = init_ray_during(index)  # as `streamssl run` does with stream.virtual
ready = time.perf_counter() - t
batches = read_stream(sys.argv[2]).iter_batches(batch_size=100, batch_format="numpy")
batch = next(iter(batches))
assert batch["pos"].tolist() == list(range(100)) and not any(batch["skip"])
first = time.perf_counter() - t
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(built, ready, first, int(hwm.split()[1]) * 1024)
del batches
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--png", type=int, default=8000, help="32x32 PNG images")
    parser.add_argument("--jpeg", type=int, default=3000, help="256x256 JPEG images")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per reader (best is kept)")
    parser.add_argument("--plan-samples", type=int, default=13_200_000)
    parser.add_argument("--plan-classes", type=int, default=21_841)
    parser.add_argument("--skip-plan", action="store_true", help="skip (b) and (c)")
    parser.add_argument("--only-plan", action="store_true", help="run only (b) and (c)")


def run(args: argparse.Namespace) -> int:
    from streamssl.ray_setup import init_ray

    if args.only_plan and args.skip_plan:
        raise ConfigError("--only-plan and --skip-plan: choose one")

    init_ray()
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-execution INFO lines
    with tempfile.TemporaryDirectory(prefix="streamssl-bench-") as tmp:
        if args.only_plan:
            write_bench_dataset(os.path.join(tmp, "jpg-data"), min(args.jpeg, 300), 256, "jpg")
        else:
            for fmt, n, size in (("png", args.png, 32), ("jpg", args.jpeg, 256)):
                _report_read(*_bench_streams(tmp, fmt, n, size), fmt, size, args.repeats)
            _report_s3(os.path.join(tmp, "jpg-data"), args.repeats)
        if not args.skip_plan:
            import ray

            ray.shutdown()  # (b) and (c) time fresh processes: this one's Ray must not compete
            _report_plan(tmp, args.plan_samples, args.plan_classes)
            _report_first_batch(tmp, os.path.join(tmp, "jpg-data"), args.plan_samples, args.plan_classes)
    return 0


def _bench_streams(tmp: str, fmt: str, n: int, size: int) -> tuple[str, str]:
    """A dataset of n images, and its seq stream materialized and virtual."""
    from streamssl.streams.build import build_stream

    data, real, virtual = (os.path.join(tmp, f"{fmt}{suffix}") for suffix in ("-data", "", "-virtual"))
    write_bench_dataset(data, n, size, fmt)
    build_stream(data, real, kind="seq", shard_size=1000, progress=False)
    build_stream(data, virtual, kind="seq", progress=False, virtual=True)
    return real, virtual


def _bench_images(n: int, size: int, fmt: str):
    """n encoded textured images (the same for every call with the same arguments)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for _ in range(n):
        freq = rng.uniform(2, 12, 3)
        image = 127 + 100 * np.sin(freq[None, None] * (xx + yy * freq[0])[..., None] * 3.1)
        image = (image + rng.normal(0, 12, image.shape)).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG" if fmt == "png" else "JPEG", quality=90)
        yield buf.getvalue()


def write_bench_dataset(dataset_dir: str, n: int, size: int, fmt: str, shard_size: int = 1000) -> None:
    """A prepared dataset (shards, manifest.parquet, dataset.json) of n images in 10 interleaved classes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from streamssl.streams.tario import ShardWriter

    fsio.makedirs(dataset_dir)
    rows = {"key": [], "index": [], "shard": [], "offset": [], "nbytes": [], "size": [], "ext": [], "label": []}
    writer = None
    for i, data in enumerate(_bench_images(n, size, fmt)):
        if i % shard_size == 0:
            if writer is not None:
                writer.close()
            shard = f"shard-{i // shard_size:06d}.tar"
            writer = ShardWriter(fsio.join(dataset_dir, shard))
        key, label = f"b{i:07d}", i % 10
        offset, nbytes = writer.write(key, {fmt: data, "cls": str(label).encode()})
        for name, value in zip(rows, (key, i, shard, offset, nbytes, len(data), fmt, label)):
            rows[name].append(value)
    writer.close()
    with fsio.atomic_path(fsio.join(dataset_dir, "manifest.parquet")) as tmp:
        pq.write_table(pa.table(rows), tmp)
    info = {"num_samples": n, "num_classes": 10, "class_names": [f"c{c}" for c in range(10)],
            "class_counts": np.bincount(np.arange(n) % 10, minlength=10).tolist(), "source": "bench",
            "skipped": [], "shard_root": ".", "image_ext": fmt}
    fsio.write_text(fsio.join(dataset_dir, "dataset.json"), json.dumps(info))


def write_bench_stream(stream_dir: str, n: int, size: int, fmt: str, shard_size: int = 1000) -> None:
    """A stream folder (stream shards, index.parquet, stream.json) of n textured images."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from streamssl.streams.tario import ShardWriter

    fsio.makedirs(stream_dir)
    images = _bench_images(n, size, fmt)
    rows = {"pos": [], "key": [], "label": [], "shard": [], "offset": [], "nbytes": []}
    for start in range(0, n, shard_size):
        shard = f"stream-{start // shard_size:06d}.tar"
        writer = ShardWriter(fsio.join(stream_dir, shard))
        for pos in range(start, min(n, start + shard_size)):
            key, label = f"b{pos:07d}", pos % 10
            meta = json.dumps({"key": key, "pos": pos}).encode()
            offset, nbytes = writer.write(f"{pos:010d}", {fmt: next(images), "cls": str(label).encode(),
                                                          "json": meta})
            for name, value in zip(rows, (pos, key, label, shard, offset, nbytes)):
                rows[name].append(value)
        writer.close()
    with fsio.atomic_path(fsio.join(stream_dir, "index.parquet")) as tmp:
        pq.write_table(pa.table(rows), tmp)
    info = {"kind": "bench", "seed": 0, "num_samples": n}
    fsio.write_text(fsio.join(stream_dir, "stream.json"), json.dumps(info))


def _time_ray(stream_dir: str, concurrency: int | None = None, batch_size: int | None = None,
              block: int = 1) -> tuple[float, np.ndarray]:
    """Seconds to iterate the whole stream (None: the blocks as read; an int: fixed batches, from
    Ray blocks cut at multiples of `block` rows, as a training worker reads with block = batch)."""
    from streamssl.streams import read_stream

    t, pos = time.perf_counter(), []
    for batch in read_stream(stream_dir, concurrency=concurrency, block=block).iter_batches(
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


def _report_read(stream_dir: str, virtual_dir: str, fmt: str, size: int, repeats: int) -> None:
    _time_ray(stream_dir)  # warm-up: Ray worker start and imports are not throughput
    runs = {"blocks": (stream_dir, None, 1), "batches": (stream_dir, 256, 1), "aligned": (stream_dir, 256, 256),
            "virtual": (virtual_dir, None, 1)}
    best = dict.fromkeys([*runs, "wds", "wds_sj"], np.inf)
    order_ok = True
    for _ in range(repeats):  # interleaved, so load from other processes hits all of them alike
        for name, (path, batch_size, block) in runs.items():
            seconds, pos = _time_ray(path, batch_size=batch_size, block=block)
            best[name] = min(best[name], seconds)
            order_ok &= bool(np.array_equal(pos, np.arange(len(pos))))
        seconds, n = _time_webdataset(stream_dir)
        best["wds"] = min(best["wds"], seconds)
        if fmt == "jpg":  # the same decoder as read_stream's JPEG path: isolates what Ray adds
            best["wds_sj"] = min(best["wds_sj"], _time_webdataset(stream_dir, simplejpeg=True)[0])
    rate = {name: n / seconds for name, seconds in best.items()}
    print(f"(a) {size}x{size} {fmt.upper()}, {n} images, best of {repeats}: webdataset (1 process, its PIL "
          f"decoder) {rate['wds']:,.0f} img/s; read_stream {rate['blocks']:,.0f} img/s as read "
          f"(ratio {rate['blocks'] / rate['wds']:.2f}x); in batches of 256 {rate['batches']:,.0f} img/s from "
          f"blocks cut anywhere, {rate['aligned']:,.0f} from blocks cut at batch boundaries (ratio "
          f"{rate['aligned'] / rate['wds']:.2f}x); stream order preserved: {order_ok}")
    print(f"    virtual stream (local disk, byte ranges from the class-interleaved source shards): "
          f"{rate['virtual']:,.0f} img/s, {rate['virtual'] / rate['blocks']:.2f}x the materialized read")
    if fmt == "jpg":
        print(f"    webdataset with simplejpeg as its decoder: {rate['wds_sj']:,.0f} img/s "
              f"(read_stream / that: {rate['blocks'] / rate['wds_sj']:.2f}x)")
    cpus = os.cpu_count() or 1
    levels = [c for c in (1, 2, 4, 8, 16, 32) if c <= cpus]
    scaling = ", ".join(f"{c}: {n / _time_ray(stream_dir, c)[0]:,.0f}" for c in levels)
    batched = ", ".join(f"{c}: {n / _time_ray(stream_dir, c, 256, 256)[0]:,.0f}" for c in levels)
    print(f"    read tasks at once ({cpus} CPUs) -> img/s as read: {scaling}; in aligned batches of 256: {batched}")


def _report_s3(local_data: str, repeats: int) -> None:
    """Virtual vs materialized reads with dataset and streams in a loopback S3 server (moto)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("    S3 (loopback server): skipped, moto is not installed (pip install 'moto[server]')")
        return
    import boto3

    from streamssl.streams.build import build_stream

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in _S3_ENV}
    try:
        host, port = server.get_host_and_port()
        os.environ.update({**_S3_ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}"})
        boto3.client("s3").create_bucket(Bucket="bench")
        data, real, virtual = "s3://bench/data", "s3://bench/seq", "s3://bench/seq-virtual"
        fsio.upload_tree(local_data, data, last=("dataset.json",))
        build_stream(data, real, kind="seq", shard_size=1000, progress=False)
        build_stream(data, virtual, kind="seq", progress=False, virtual=True)
        best = {name: min(_time_ray(path)[0] for _ in range(repeats)) for name, path in
                (("materialized", real), ("virtual", virtual))}
        n = int(fsio.read_json(fsio.join(real, "stream.json"))["num_samples"])
        print(f"    S3 (loopback moto server, same JPEG dataset, best of {repeats}): materialized "
              f"{n / best['materialized']:,.0f} img/s, virtual {n / best['virtual']:,.0f} img/s "
              f"({best['materialized'] / best['virtual']:.2f}x the materialized read)")
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})
        for k in (k for k, v in saved.items() if v is None):
            os.environ.pop(k, None)
        server.stop()


_S3_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": ""}


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


def _report_first_batch(tmp: str, source_dir: str, num_samples: int, num_classes: int) -> None:
    """The steps of `streamssl run` with stream.virtual over a num_samples-row manifest: the index
    written while Ray starts, then the first batch of 100; and the same with Ray already running."""
    data = os.path.join(tmp, "big-data")
    _write_big_manifest(source_dir, data, num_samples, num_classes)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    for case in ("start", "running"):
        out = subprocess.run([sys.executable, "-c", _FIRST_BATCH_SCRIPT, data, os.path.join(tmp, f"big-{case}"),
                              case], capture_output=True, text=True, env=env, check=True).stdout.split()
        built, ready, first, peak = float(out[0]), float(out[1]), float(out[2]), int(out[3])
        how = ("Ray started beside the index (as `streamssl run` does), Ray up at "
               f"{ready:.1f} s" if case == "start" else "Ray already running (started before the clock)")
        print(f"(c) stream --virtual (seq-bl) over {num_samples:,} rows / {num_classes:,} classes, {how}: index "
              f"written at {built:.1f} s; first batch of 100 decoded at {first:.1f} s; peak RSS of the process "
              f"{peak / 2**30:.2f} GiB (Ray's own processes not counted)")


def _write_big_manifest(source_dir: str, out_dir: str, num_samples: int, num_classes: int) -> None:
    """A dataset folder whose manifest has num_samples rows cycling over the real samples of
    `source_dir` (keys and byte ranges stay true), with long-tailed labels like ImageNet-21K."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.read_table(os.path.join(source_dir, "manifest.parquet"))
    source = source.set_column(source.schema.get_field_index("shard"), "shard",
                               pa.array([os.path.join(source_dir, s) for s in source["shard"].to_pylist()]))
    table = source.take(pa.array(np.arange(num_samples) % source.num_rows)).drop_columns(["label", "index"])
    weights = np.random.default_rng(0).pareto(1.5, num_classes) + 0.2
    labels = np.random.default_rng(1).choice(num_classes, num_samples, p=weights / weights.sum())
    table = table.append_column("label", pa.array(labels.astype(np.int64)))
    fsio.makedirs(out_dir)
    with fsio.atomic_path(os.path.join(out_dir, "manifest.parquet")) as tmp:
        pq.write_table(table, tmp)
    info = {"num_samples": num_samples, "num_classes": num_classes, "source": "bench", "skipped": [],
            "shard_root": "/", "image_ext": "jpg"}
    fsio.write_text(os.path.join(out_dir, "dataset.json"), json.dumps(info))
