"""Ray Train overhead: 1 worker vs the in-process runner, 2 workers vs 1, and global dedup cost.

(a) The same preset run end to end three ways: in this process, through a 1-worker TorchTrainer
and through a 2-worker one. The loop times its steady window (first to last stream batch), so the
updates/s ratio compares the training itself at the same torch thread count; start-up (driver to
first batch, less that batch's own compute) and the time after the stream (final evaluation,
outputs, Ray Train teardown) are reported on their own. (b) One global dedup round over W gloo
processes each holding M buffered features: seconds and bytes received per rank, against W x M.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from streamssl.commands._args import positive_int

PIPELINES = Path(__file__).resolve().parents[3] / "pipelines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pipeline", default=str(PIPELINES / "fmnist-cpu.yaml"))
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads of the 1-worker runs")
    parser.add_argument("--workers", default="1,2", help="Ray Train worker counts to time")
    parser.add_argument("--dedup-world", default="1,2,4", help="process counts W for the dedup table")
    parser.add_argument("--dedup-sizes", default="256,1024,4096", help="entries M per rank for the dedup table")
    parser.add_argument("--feature-dim", type=int, default=256, help="buffer feature size D (fmnist-cpu: 256)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-dedup", action="store_true")
    parser.add_argument("overrides", nargs="*", help="key=value pipeline overrides")


def run(args: argparse.Namespace) -> int:
    if not args.skip_train:
        _report_train(args)
    if not args.skip_dedup:
        _report_dedup([int(w) for w in args.dedup_world.split(",")], [int(m) for m in args.dedup_sizes.split(",")],
                      args.feature_dim)
    return 0


# ---------------------------------------------------------------- (a) training through Ray Train


def _timed_run(pipeline: str, overrides: list[str], trainer: str, out: Path) -> dict:
    from streamssl import resolve
    from streamssl.pipeline import run_pipeline

    config = resolve.load(pipeline, overrides)
    start = time.time()
    info = run_pipeline(config, out, progress=False, trainer=trainer)
    end = time.time()
    rate = info["steady_updates"] / info["steady_seconds"]
    first_batch = config.learner.k / rate  # the first batch's own updates are training, not start-up
    samples = info["samples_seen"] * info["steady_updates"] / max(info["updates"], 1)
    return {"wall": end - start, "rate": rate, "samples_per_s": samples / info["steady_seconds"],
            "startup": info["first_batch_at"] - start - first_batch, "after": end - info["last_batch_at"],
            "updates": info["updates"], "final_knn": info["final_knn"]}


def _report_train(args: argparse.Namespace) -> None:
    from streamssl.ray_setup import init_ray

    init_ray()
    common = [*args.overrides, "eval.points=[1.0]", "eval.linear=off", "checkpoint.every=0",
              "learner.grad_cosine=false"]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="streamssl-bench-ddp-") as tmp:
        _timed_run(args.pipeline, common + [f"learner.threads={args.threads}"], "local", Path(tmp, "warm"))
        rows["in-process"] = _timed_run(args.pipeline, common + [f"learner.threads={args.threads}"], "local",
                                        Path(tmp, "local"))
        for w in (int(w) for w in args.workers.split(",")):
            threads = max(1, args.threads // w)  # the same cores shared out, not oversubscribed
            rows[f"Ray Train, {w} worker{'s' * (w > 1)}"] = _timed_run(
                args.pipeline, common + [f"scaling.num_workers={w}", f"learner.threads={threads}"], "ray",
                Path(tmp, f"ray{w}"))
    _print_train(rows, args)


def _print_train(rows: dict, args: argparse.Namespace) -> None:
    base = rows["in-process"]
    print(f"(a) {Path(args.pipeline).name} {' '.join(args.overrides)}; {args.threads} torch threads in all "
          f"(split across workers); one run each after a warm-up run, machine cores: {os.cpu_count()}")
    print(f"{'path':24s} {'updates/s':>9s} {'ratio':>6s} {'samples/s':>9s} {'ratio':>6s} {'start-up s':>10s} "
          f"{'after s':>7s} {'wall s':>6s} {'final kNN':>9s}")
    for name, r in rows.items():
        print(f"{name:24s} {r['rate']:9.2f} {r['rate'] / base['rate']:5.2f}x {r['samples_per_s']:9.0f} "
              f"{r['samples_per_s'] / base['samples_per_s']:5.2f}x {r['startup']:10.1f} {r['after']:7.1f} "
              f"{r['wall']:6.1f} {r['final_knn']:9.4f}")
    print("    updates/s and samples/s: the steady window (first to last stream batch); start-up: call to "
          "first batch, less one batch of updates; after: last batch to return (final kNN, outputs, teardown)")


# ---------------------------------------------------------------- (b) global dedup rounds


def _dedup_rank(rank: int, world: int, sizes: list[int], dim: int, tmp: str) -> None:
    import torch.distributed as dist

    from streamssl.train.dedup_round import global_dedup_round

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=world)
    results = {}
    try:
        for m in sizes:
            runs = []
            for repeat in range(3):
                buf = _filled_buffer(m, dim, seed=rank * 1000 + repeat)
                dist.barrier()
                runs.append(global_dedup_round(buf, threshold=0.95, max_fraction=0.1))
            results[m] = {"seconds": statistics.median(r["seconds"] for r in runs),
                          "bytes": runs[0]["bytes_exchanged"], "removed": sum(runs[0]["removed_per_rank"])}
    finally:
        dist.destroy_process_group()
    Path(tmp, f"rank{rank}.json").write_text(json.dumps(results))


def _filled_buffer(m: int, dim: int, seed: int):
    """A full buffer of M entries, all seen, with random features (a few near-duplicates)."""
    from streamssl.buffers.storage import ReplayBuffer

    g = torch.Generator().manual_seed(seed)
    buf = ReplayBuffer(capacity=m, image_shape=(3, 1, 1), feature_dim=dim, max_batch=m)
    buf.insert(torch.zeros(m, 3, 1, 1, dtype=torch.uint8), [f"{seed}-{i}" for i in range(m)],
               torch.zeros(m, dtype=torch.long))
    feats = torch.randn(m, dim, generator=g)
    feats[1::10] = feats[::10][: len(feats[1::10])] + 0.01 * torch.randn(len(feats[1::10]), dim, generator=g)
    buf.update_features(torch.arange(m), feats)
    return buf


def _report_dedup(worlds: list[int], sizes: list[int], dim: int) -> None:
    import torch.multiprocessing as mp

    print(f"(b) one global dedup round, D={dim}, threshold 0.95, max_fraction 0.1, 1 thread per rank, "
          f"median of 3 (gloo over {os.cpu_count()} cores; W above the core count is oversubscribed)")
    print(f"{'W':>3s} {'M/rank':>7s} {'W x M':>7s} {'seconds':>8s} {'MiB recv/rank':>13s} {'removed':>7s}")
    for world in worlds:
        with tempfile.TemporaryDirectory(prefix="streamssl-bench-dedup-") as tmp:
            mp.spawn(_dedup_rank, args=(world, sizes, dim, tmp), nprocs=world, join=True)
            ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world)]
        for m in sizes:
            seconds = max(r[str(m)]["seconds"] for r in ranks)  # the round ends when the slowest rank does
            first = ranks[0][str(m)]
            print(f"{world:3d} {m:7d} {world * m:7d} {seconds:8.3f} {first['bytes'] / 2**20:13.2f} "
                  f"{first['removed']:7d}")
