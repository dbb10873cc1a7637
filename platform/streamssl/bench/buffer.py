"""Benchmark the diversity buffer: select_diverse vs the naive procedure, and the cached policy per step.

The naive procedure is `naive_greedy` of tests/buffers/greedy_reference.py on the same fixed-point
grid (a full similarity matrix and a full scan per removal), so the two must agree bit for bit; that
file also holds the float64 reference that both are checked against. The benchmark therefore runs
from a checkout of the repository, where tests/ sits beside platform/.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import statistics
import time
from pathlib import Path

import torch

from streamssl.buffers import Diverse, ReplayBuffer, oldest, resize, select_diverse
from streamssl.buffers.neighbours import quantize
from streamssl.commands._args import positive_int
from streamssl.errors import StreamSSLError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384],
                        help="buffer sizes M compared against the naive procedure")
    parser.add_argument("--large", type=int, default=65536, help="M for select_diverse alone (0 skips)")
    parser.add_argument("--dim", type=int, default=1024, help="feature dimension D")
    parser.add_argument("--n-remove", type=int, default=128, help="entries removed per selection")
    parser.add_argument("--policy-size", type=int, default=16384, help="M for the cached policy (0 skips)")
    parser.add_argument("--changed", type=int, nargs="+", default=[200, 2000],
                        help="rows whose features change per stream step (2B per update x K updates)")
    parser.add_argument("--steps", type=int, default=3, help="stream steps timed for the cached policy")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)


def _timed(fn):
    """fn(), its wall seconds and its process CPU seconds (all threads; steadier on a shared machine)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start, time.process_time() - cpu


def _features(m: int, args: argparse.Namespace, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(m, args.dim, generator=gen).to(args.device)


@functools.cache  # loaded once, during the warm-up call, so no timing includes it
def _naive_greedy():
    path = Path(__file__).resolve().parents[3] / "tests" / "buffers" / "greedy_reference.py"
    if not path.is_file():
        raise StreamSSLError(f"bench buffer compares against {path}, which this installation lacks: "
                             "run it from a checkout of the repository")
    spec = importlib.util.spec_from_file_location("greedy_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.naive_greedy


def _naive_select(feats: torch.Tensor, n_remove: int, life: torch.Tensor) -> torch.Tensor:
    """select_diverse's rule, all rows seen, by the naive procedure."""
    if feats.shape[0] < 2 * n_remove:
        return oldest(life, n_remove)
    return _naive_greedy()(quantize(feats), n_remove)


def _one_shot(m: int, args: argparse.Namespace, gen: torch.Generator, naive: bool) -> list[str]:
    feats = _features(m, args, gen)
    seen = torch.ones(m, dtype=torch.bool, device=args.device)
    life = torch.ones(m, dtype=torch.long, device=args.device)
    fast, t_fast, c_fast = _timed(lambda: select_diverse(feats, args.n_remove, seen, life))
    if not naive:
        return [str(m), f"{t_fast:.2f}", "-", "-", f"{c_fast:.2f}", "-", "-", "-"]
    slow, t_slow, c_slow = _timed(lambda: _naive_select(feats, args.n_remove, life))
    if not torch.equal(fast, slow):
        raise RuntimeError(f"select_diverse and the naive procedure disagree at M={m}")
    return [str(m), f"{t_fast:.2f}", f"{t_slow:.2f}", f"{t_slow / t_fast:.1f}x", f"{c_fast:.2f}",
            f"{c_slow:.2f}", f"{c_slow / c_fast:.1f}x", "yes"]


def _filled_buffer(args: argparse.Namespace, gen: torch.Generator) -> tuple[ReplayBuffer, Diverse]:
    m, b = args.policy_size, args.n_remove
    buf = ReplayBuffer(m, (3, 1, 1), args.dim, max_batch=b, device=args.device)
    policy = Diverse()
    for start in range(0, m + b, b):
        n = min(b, m + b - start)
        images = torch.zeros(n, 3, 1, 1, dtype=torch.uint8)
        slots = buf.insert(images, ["x"] * n, torch.zeros(n, dtype=torch.long))
        buf.update_features(slots, _features(n, args, gen))
    resize(buf, policy, gen)  # first resize: builds the neighbour lists from scratch
    return buf, policy


def _policy_step(buf: ReplayBuffer, policy: Diverse, args: argparse.Namespace, gen: torch.Generator,
                 changed: int) -> tuple[float, float, dict]:
    """One stream step: insert n_remove entries, change `changed` rows, then resize (timed)."""
    b = args.n_remove
    new = buf.insert(torch.zeros(b, 3, 1, 1, dtype=torch.uint8), ["x"] * b, torch.zeros(b, dtype=torch.long))
    old = buf.sample(max(changed - b, 0), gen, exclude=new)
    touched = torch.cat([new, old.to(new.device)])
    buf.update_features(touched, _features(touched.numel(), args, gen))
    n_remove = len(buf) - buf.capacity
    full, t_full, c_full = _timed(lambda: select_diverse(buf.features, n_remove, buf.seen, buf.lifespan))
    cached, t_cached, c_cached = _timed(lambda: policy.select(buf, n_remove, gen))
    if not torch.equal(full, cached):
        raise RuntimeError("the cached policy and select_diverse disagree")
    buf.remove(cached)
    return t_cached, t_full, c_cached, c_full, dict(policy.last_stats)


def _paper_preset_upkeep(args: argparse.Namespace, gen: torch.Generator) -> float:
    """Seconds of buffer work per stream step at the paper preset (buffer 256, B 100, K 10)."""
    cap, b, k = 256, 100, 10
    buf, policy = ReplayBuffer(cap, (3, 32, 32), args.dim, max_batch=b, device=args.device), Diverse()
    images = torch.zeros(b, 3, 32, 32, dtype=torch.uint8)
    feats = _features(2 * b, args, gen)  # made once: the timer covers buffer work only
    times = []
    for step in range(8):
        start = time.perf_counter()
        new = buf.insert(images, ["x"] * b, torch.zeros(b, dtype=torch.long))
        for _ in range(k):
            slots = torch.cat([new, buf.sample(b, gen, exclude=new)]) if len(buf) >= 2 * b else new
            buf.update_features(slots, feats[: slots.numel()])
        resize(buf, policy, gen)
        if step >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(args: argparse.Namespace) -> int:
    if args.n_remove < 1 or args.dim < 1 or args.threads < 1 or min(args.changed) < 0:
        raise StreamSSLError("--n-remove, --dim and --threads must be >= 1 and --changed >= 0")
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    _one_shot(512, args, gen, naive=True)  # warm-up: first calls pay for kernel initialisation
    print(f"select_diverse vs naive: D={args.dim}, n_remove={args.n_remove}, {args.threads} threads, "
          f"device {args.device}")
    rows = [["M", "fast [s]", "naive [s]", "speed-up", "fast [cpu s]", "naive [cpu s]", "cpu speed-up",
             "same result"]]
    rows += [_one_shot(m, args, gen, naive=True) for m in args.sizes]
    if args.large:
        rows.append(_one_shot(args.large, args, gen, naive=False))
    _table(rows)
    if args.policy_size:
        _policy_report(args, gen)
    print(f"\nbuffer upkeep per stream step at the paper preset (256 + 100, K=10, D={args.dim}): "
          f"{_paper_preset_upkeep(args, gen) * 1e3:.1f} ms (insert, 10 samples, 10 feature updates, resize)")
    return 0


def _policy_report(args: argparse.Namespace, gen: torch.Generator) -> None:
    buf, policy = _filled_buffer(args, gen)
    print(f"\nDiverse policy per stream step at M={args.policy_size} (+{args.n_remove} new), "
          f"median of {args.steps} steps, same result as select_diverse asserted:")
    rows = [["rows changed", "cached [s]", "full [s]", "speed-up", "cached [cpu s]", "full [cpu s]",
             "cpu speed-up", "rows computed", "rows rescanned"]]
    for changed in args.changed:
        steps = [_policy_step(buf, policy, args, gen, changed) for _ in range(args.steps)]
        cached, full, c_cached, c_full = (statistics.median(s[i] for s in steps) for i in range(4))
        stats = steps[-1][4]
        rows.append([str(changed), f"{cached:.3f}", f"{full:.3f}", f"{full / cached:.1f}x", f"{c_cached:.3f}",
                     f"{c_full:.3f}", f"{c_full / c_cached:.1f}x", str(stats.get("computed")),
                     str(stats.get("rescanned"))])
    _table(rows)


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(r, widths)))
