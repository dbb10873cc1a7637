"""GPU check: the CUDA path end to end on synthetic data, in minutes (exits 0 without a GPU).

Five checks, each printed as one line with its figure: batched multi-crop on CUDA against the CPU
result for the same draws; bf16 autocast learner updates (finite losses, moved weights); the NCCL
collectives the learner and global dedup use (one process per visible GPU); a 1-worker Ray Train
run with `scaling.use_gpu`; and ResNet-18 updates/s at the paper preset (N = 20, B = 100 + 100,
32 px, `pipelines/cifar10-seq.yaml`). The first failure stops the check with exit 1.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import tempfile
import time
from pathlib import Path

import torch

from streamssl.commands._args import positive_int

PIPELINES = Path(__file__).resolve().parents[3] / "pipelines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batches", type=positive_int, default=6, help="stream batches timed at the paper preset")
    parser.add_argument("--skip-ray", action="store_true", help="skip the Ray Train check")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="run the checks on the CPU with gloo (tests the check itself; no paper-preset timing)")


def run(args: argparse.Namespace) -> int:
    if args.cpu_dry_run:
        return _run_checks(_checks(torch.device("cpu"), args))
    if not torch.cuda.is_available():
        print("no CUDA GPU visible to torch (torch.cuda.is_available() is False): nothing to check")
        return 0
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): "
          f"{torch.cuda.get_device_name(0)}")
    return _run_checks(_checks(torch.device("cuda"), args))


def _checks(device: torch.device, args: argparse.Namespace) -> list:
    checks = [("multi-crop on CUDA vs CPU", lambda: check_multicrop(device)),
              ("bf16 autocast updates", lambda: check_bf16_updates(device)),
              ("NCCL collectives", lambda: check_collectives(device))]
    if not args.skip_ray:
        checks.append(("Ray Train, 1 worker, use_gpu", lambda: check_ray_train(device)))
    if device.type == "cuda":
        checks.append(("paper preset updates/s", lambda: check_paper_speed(args.batches)))
    return checks


def _run_checks(checks: list) -> int:
    for name, check in checks:
        t0 = time.perf_counter()
        try:
            detail = check()
        except Exception as err:  # report which check broke, then stop: later checks build on it
            print(f"FAIL  {name}: {type(err).__name__}: {err}")
            return 1
        print(f"ok    {name}: {detail} ({time.perf_counter() - t0:.1f} s)")
    return 0


def check_multicrop(device: torch.device) -> str:
    from streamssl.augment import CropParams, multicrop

    params = CropParams(crops=20, size=32)
    images = torch.randint(0, 256, (64, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    cpu = multicrop(images, params, torch.Generator().manual_seed(1))
    gpu = multicrop(images.to(device), params, torch.Generator().manual_seed(1))
    diff = (gpu.float().cpu() - cpu.float()).abs().max().item()
    if diff > 1e-3:
        raise AssertionError(f"CUDA crops differ from the CPU crops by up to {diff:.2e} (tolerance 1e-3)")
    return f"{tuple(gpu.shape)} crops, max |CUDA - CPU| = {diff:.1e}"


def check_bf16_updates(device: torch.device) -> str:
    from streamssl import resolve as cfg
    from streamssl.train.learner import Learner

    config = cfg.load(PIPELINES / "smoke.yaml", ["learner.bf16=true", f"scaling.use_gpu={device.type == 'cuda'}"])
    learner = Learner(config, device, total_updates=8)
    before = [p.detach().clone() for p in learner.method.parameters()]
    size, b = config.model.image_size, config.learner.stream_batch
    losses = []
    for i in range(8):
        images = torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, device=device)
        losses += [r.loss for r in learner.observe(images, [f"{i}-{j}" for j in range(b)],
                                                   torch.zeros(b, dtype=torch.long))]
    moved = sum(not torch.equal(p0, p.detach()) for p0, p in zip(before, learner.method.parameters()))
    if not learner.bf16 or not losses or not all(map(math.isfinite, losses)) or moved == 0:
        raise AssertionError(f"bf16={learner.bf16}, losses={losses}, parameters moved: {moved}")
    return f"{len(losses)} updates under bf16 autocast, losses finite ({losses[-1]:.3f} last), {moved} tensors moved"


def check_collectives(device: torch.device) -> str:
    world = torch.cuda.device_count() if device.type == "cuda" else 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_collectives_worker, args=(world, port, device.type), nprocs=world, join=True)
    backend = "nccl" if device.type == "cuda" else "gloo"
    return f"all_gather_varlen, all_gather_with_grad, all_reduce_mean over {world} rank(s) ({backend})"


def _collectives_worker(rank: int, world: int, port: int, device_type: str) -> None:
    import torch.distributed as dist

    from streamssl import distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if device_type == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=rank, world_size=world)
    device = torch.device(device_type)
    try:
        x = torch.full((rank + 2, 4), float(rank), device=device)
        gathered, counts = distributed.all_gather_varlen(x)
        assert counts == [r + 2 for r in range(world)], counts
        assert gathered.shape[0] == sum(counts) and gathered.device.type == device_type
        z = torch.randn(3, 4, device=device, requires_grad=True)
        distributed.all_gather_with_grad(z).sum().backward()
        assert z.grad is not None and torch.isfinite(z.grad).all()
        mean = distributed.all_reduce_mean(torch.full((2,), float(rank), device=device))
        assert torch.allclose(mean, torch.full_like(mean, (world - 1) / 2))
    finally:
        dist.destroy_process_group()


def check_ray_train(device: torch.device) -> str:
    from streamssl import resolve as cfg
    from streamssl.pipeline import run_pipeline

    config = cfg.load(PIPELINES / "smoke.yaml", [f"scaling.use_gpu={device.type == 'cuda'}", "scaling.num_workers=1"])
    with tempfile.TemporaryDirectory() as tmp:
        info = run_pipeline(config, Path(tmp) / "run", progress=False, trainer="ray")
    if info.get("status") != "completed":
        raise AssertionError(f"run ended {info.get('status')}: {info.get('error')}")
    return f"completed, {info['updates']} updates, final kNN {info['final_knn']:.3f}"


def check_paper_speed(batches: int) -> str:
    from streamssl.bench.step import time_preset

    row = time_preset(PIPELINES / "cifar10-seq.yaml", [], torch.device("cuda"), batches, warmup=2)
    return (f"ResNet-18, N=20, B=100+100, 32 px: {row['updates_per_s']:.2f} updates/s, "
            f"{row['images_per_s']:.0f} images/s, bf16 {row['bf16']}")
