"""The scaled simulation: a 1M-sample synthetic stream over 2 Ray Train workers on a local
multi-node Ray cluster (several raylets on this machine), with kNN evaluations and global dedup.

Prints samples/s over the stream, the global-dedup cost (rounds, seconds, bytes, removals) and
memory (peak PSS of the cluster's processes and of each Train worker, sampled every few seconds).
The dataset and stream are prepared before the clock starts and cached under $STREAMSSL_DATA.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

PIPELINES = Path(__file__).resolve().parents[3] / "pipelines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pipeline", default=str(PIPELINES / "sim-1m.yaml"))
    parser.add_argument("--nodes", type=int, default=2, help="raylets (simulated nodes) on this machine")
    parser.add_argument("--cpus-per-node", type=float, default=2, help="logical CPUs each raylet offers")
    parser.add_argument("--out", default="runs/bench-scale", help="run directory")
    parser.add_argument("overrides", nargs="*", help="key=value pipeline overrides (e.g. a smaller stream)")


def run(args: argparse.Namespace) -> int:
    import ray
    from ray.cluster_utils import Cluster

    from streamssl import resolve
    from streamssl.pipeline import ensure_dataset, ensure_stream

    config = resolve.load(args.pipeline, args.overrides)
    t0 = time.perf_counter()
    stream_dir = ensure_stream(config, ensure_dataset(config))  # before the cluster: not timed below
    prep = time.perf_counter() - t0
    ray.shutdown()  # preparing may have started a private local Ray; the run gets the cluster
    cluster = Cluster(initialize_head=True, head_node_args=_node_args(args.cpus_per_node))
    try:
        for _ in range(args.nodes - 1):
            cluster.add_node(**_node_args(args.cpus_per_node))
        ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
        nodes = [n for n in ray.nodes() if n["Alive"]]
        print(f"cluster: {len(nodes)} raylets x {args.cpus_per_node:g} CPUs; data ready in {prep:.0f} s "
              f"({stream_dir})")
        result = _run_sampled(config, Path(args.out))
    finally:
        ray.shutdown()
        cluster.shutdown()
    _print(result, Path(args.out))
    return 0


def _node_args(cpus: float) -> dict:
    return {"num_cpus": cpus, "object_store_memory": 512 << 20, "include_dashboard": False}


def _run_sampled(config, run_dir: Path) -> dict:
    from streamssl.pipeline import run_pipeline

    sampler = _MemorySampler(run_dir)
    sampler.start()
    try:
        info = run_pipeline(config, run_dir, progress=True, trainer="ray")
    finally:
        sampler.stop()
    return {"info": info, "memory": sampler.peaks()}


class _MemorySampler(threading.Thread):
    """Peak PSS (shared pages split among their users) of this process tree and of each worker."""

    def __init__(self, run_dir: Path, every: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.every, self._stop_event = run_dir, every, threading.Event()
        self.total_peak, self.worker_peak = 0, {}

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop_event.wait(self.every):
            procs = [me, *me.children(recursive=True)]
            self.total_peak = max(self.total_peak, sum(_pss(p) for p in procs))
            for pid_file in (self.run_dir / "workers").glob("rank*.pid"):
                rank = pid_file.stem
                try:
                    pss = _pss(psutil.Process(int(pid_file.read_text())))
                except (ValueError, psutil.Error):
                    continue
                self.worker_peak[rank] = max(self.worker_peak.get(rank, 0), pss)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)

    def peaks(self) -> dict:
        return {"total": self.total_peak, "workers": dict(sorted(self.worker_peak.items()))}


def _pss(proc) -> int:
    import psutil

    try:
        return proc.memory_full_info().pss
    except psutil.Error:  # exited between listing and reading
        return 0


def _print(result: dict, run_dir: Path) -> None:
    import pandas as pd

    info, mem = result["info"], result["memory"]
    frame = pd.read_parquet(run_dir / "metrics.parquet")
    seconds = frame[frame.metric == "dedup/seconds"].value
    sent = frame[frame.metric == "dedup/bytes"].value
    removed = frame[frame.metric == "dedup/removed"].value
    knn = frame[(frame.metric == "eval/knn_top1")].sort_values("samples_seen")
    steady = info["samples_seen"] * info["steady_updates"] / max(info["updates"], 1) / info["steady_seconds"]
    print(f"stream: {info['samples_seen']:,} samples, {info['updates']:,} updates per worker, wall "
          f"{info['wall_seconds'] / 60:.1f} min (training loop {info['train_seconds'] / 60:.1f} min)")
    print(f"samples/s: {info['samples_seen'] / info['wall_seconds']:,.0f} end to end, {steady:,.0f} in the "
          f"steady window (first to last stream batch)")
    if len(seconds):
        print(f"global dedup: {len(seconds)} rounds, {seconds.median() * 1e3:.1f} ms median ({seconds.max() * 1e3:.1f} "
              f"max), {sent.median() / 2**20:.2f} MiB received per rank per round, {int(removed.sum())} entries "
              f"removed in all, {100 * seconds.sum() / info['train_seconds']:.2f}% of the training loop")
    workers = ", ".join(f"{rank} {v / 2**30:.2f}" for rank, v in mem["workers"].items())
    print(f"memory (peak PSS, GiB): cluster + driver {mem['total'] / 2**30:.2f}; Train workers {workers}")
    print("kNN top-1 over the stream: " + ", ".join(f"{p:.0%} {v:.3f}" for p, v in zip(knn.progress, knn.value)))
    print(f"final kNN {info['final_knn']:.4f}, linear probe {info.get('final_linear', float('nan')):.4f}; "
          f"report: {run_dir / 'report.md'}")
    (run_dir / "bench_scale.json").write_text(json.dumps({"memory": mem, "wall_seconds": info["wall_seconds"],
                                                          "steady_samples_per_s": steady}, indent=2))
