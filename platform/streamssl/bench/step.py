"""Learner updates per second: the CPU demo preset, and ResNet-18 at the paper's settings on a GPU.

Feeds random uint8 stream batches straight into the Learner (no Ray, no evaluation), so the
figure is the update itself: augmentation, forward, backward, LARS step and buffer upkeep.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from streamssl.commands._args import positive_int

PIPELINES = Path(__file__).resolve().parents[3] / "pipelines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batches", type=int, default=12, help="stream batches timed per preset")
    parser.add_argument("--warmup", type=int, default=3, help="stream batches before timing")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: all)")
    parser.add_argument("--paper", action="store_true", help="also time ResNet-18 at the paper's settings")
    parser.add_argument("--checkpointing", action="store_true",
                        help="peak memory and update time of ResNet-18 at N = 20 with and without "
                             "model.grad_checkpointing (cifar10-seq preset)")
    parser.add_argument("--checkpointing-batch", type=positive_int, default=100,
                        help="stream batch B for --checkpointing (updates train on B + B buffered images)")


def time_preset(pipeline: Path, overrides: list[str], device: torch.device, batches: int, warmup: int) -> dict:
    from streamssl import resolve
    from streamssl.train.learner import Learner

    config = resolve.load(pipeline, overrides + ["learner.grad_cosine=false"])
    learner = Learner(config, device, total_updates=(batches + warmup) * config.learner.k)
    size, b = config.model.image_size, config.learner.stream_batch
    gen = torch.Generator().manual_seed(0)
    n_seen, elapsed, updates, images_done = 0, 0.0, 0, 0
    for i in range(warmup + batches + config.buffer.size // b):
        images = torch.randint(0, 256, (b, 3, size, size), generator=gen, dtype=torch.uint8).to(device)
        keys = [str(n_seen + j) for j in range(b)]
        n_seen += b
        _sync(device)
        t0 = time.perf_counter()
        done = learner.observe(images, keys, torch.zeros(b, dtype=torch.long))
        _sync(device)
        if i >= warmup + config.buffer.size // b:  # time only with a full buffer: the steady state
            elapsed += time.perf_counter() - t0
            updates += len(done)
            images_done += sum(r.batch_size for r in done)
    return {"preset": pipeline.stem, "method": config.method_name, "updates_per_s": updates / elapsed,
            "images_per_s": images_done / elapsed, "bf16": learner.bf16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def checkpointing_cost(batch: int, batches: int, warmup: int, threads: int) -> dict:
    """One child process per setting (peak RSS cannot be reset within a process): ResNet-18, N = 20."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        rows = [pool.apply(_checkpointing_child, (flag, batch, batches, warmup, threads)) for flag in (False, True)]
    off, on = rows
    return {"batch": batch, "off": off, "on": on, "memory_saved": 1 - on["peak_bytes"] / off["peak_bytes"],
            "time_cost": off["updates_per_s"] / on["updates_per_s"] - 1}


def _checkpointing_child(flag: bool, batch: int, batches: int, warmup: int, threads: int) -> dict:
    from streamssl.compute import gpu_peak_bytes, peak_rss_bytes

    torch.set_num_threads(threads)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    overrides = [f"model.grad_checkpointing={str(flag).lower()}", f"learner.stream_batch={batch}",
                 f"buffer.size={2 * batch}", "learner.k=1", f"scaling.use_gpu={device.type == 'cuda'}"]
    row = time_preset(PIPELINES / "cifar10-seq.yaml", overrides, device, batches, warmup)
    peak = gpu_peak_bytes(device) if device.type == "cuda" else peak_rss_bytes()
    return {**row, "peak_bytes": peak, "memory": "GPU allocated" if device.type == "cuda" else "process RSS"}


def _print_checkpointing(r: dict) -> None:
    print(f"grad checkpointing, ResNet-18 (resnet18_cifar), N = 20 crops, B = {r['batch']} + {r['batch']}, "
          f"32 px; peak memory = {r['on']['memory']}")
    for name in ("off", "on"):
        print(f"  {name:3s}: peak {r[name]['peak_bytes'] / 2 ** 20:8.0f} MiB, {r[name]['updates_per_s']:.3f} updates/s")
    print(f"  memory saved {r['memory_saved']:.1%}, time cost {r['time_cost']:+.1%} per update")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")
    if args.checkpointing:
        _print_checkpointing(checkpointing_cost(args.checkpointing_batch, args.batches, args.warmup,
                                                torch.get_num_threads()))
        return 0
    rows = []
    cpu = torch.device("cpu")
    for method in ("imai", "empssl", "minred"):
        rows.append(time_preset(PIPELINES / "fmnist-cpu.yaml", [f"method.name={method}"], cpu,
                                args.batches, args.warmup))
    if args.paper or torch.cuda.is_available():
        device = torch.device("cuda") if torch.cuda.is_available() else cpu
        rows.append(time_preset(PIPELINES / "cifar10-seq.yaml", [f"scaling.use_gpu={device.type == 'cuda'}"],
                                device, args.batches, args.warmup) | {"preset": f"cifar10-seq ({device.type})"})
    print(f"{'preset':24s} {'method':8s} {'updates/s':>10s} {'images/s':>10s} bf16")
    for r in rows:
        print(f"{r['preset']:24s} {r['method']:8s} {r['updates_per_s']:10.2f} {r['images_per_s']:10.0f} {r['bf16']}")
    return 0
