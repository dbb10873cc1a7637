"""`streamssl demo`: the main job on the embedded default (Debian's Fashion-MNIST, CPU preset).

Prepares Fashion-MNIST, builds its iid / seq / seq-bl / seq-im streams (summaries + a PNG of the
class at each stream position), then trains the paper's four methods (imai, empssl, minred, scale)
on seq, seq-bl and seq-im and ends with the Table-1-style report and the paths of its plots.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[3] / "pipelines" / "fmnist-cpu.yaml"
STREAMS = ["iid", "seq", "seq-bl", "seq-im"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="Fashion-MNIST streams + imai vs empssl vs minred vs scale (CPU preset)")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--pipeline", default=str(PIPELINE), help="pipeline to run (default fmnist-cpu)")
    parser.add_argument("--methods", default="imai,empssl,minred,scale", help="comma-separated method names")
    parser.add_argument("--streams", default="seq,seq-bl,seq-im", help="comma-separated stream kinds to train on")
    parser.add_argument("--streams-only", action="store_true", help="stop after building the streams")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for every run")
    parser.set_defaults(func=main)


def build_streams(pipeline: str, overrides: list[str], out: Path) -> dict[str, Path]:
    from streamssl import config as cfg
    from streamssl.ray_setup import init_ray
    from streamssl.streams import plot_stream_classes, summarize_stream
    from streamssl.train.runner import ensure_dataset, ensure_stream

    base = cfg.load(pipeline, overrides)
    dataset_dir = ensure_dataset(base)
    init_ray()
    dirs = {}
    for kind in STREAMS:
        dirs[kind] = ensure_stream(cfg.load(pipeline, overrides + [f"stream.kind={kind}"]), dataset_dir)
        print(summarize_stream(dirs[kind]), end="\n\n")
    png = out / "streams.png"
    plot_stream_classes([str(d) for d in dirs.values()], str(png))
    print(f"stream class plot: {png}")
    return dirs


def main(args: argparse.Namespace) -> int:
    from streamssl import config as cfg
    from streamssl.report import write_report
    from streamssl.train.runner import run_pipeline

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    build_streams(args.pipeline, args.overrides, out)
    if args.streams_only:
        return 0
    run_dirs = []
    for kind in args.streams.split(","):
        for method in args.methods.split(","):
            extra = [f"method.name={method}", f"stream.kind={kind}", f"name={method}-{kind}"]
            config = cfg.load(args.pipeline, args.overrides + extra)
            run_dir = out / "runs" / f"{method}-{kind}"
            info = run_pipeline(config, run_dir)
            print(f"  {method:8s} {kind:7s} final kNN {info['final_knn']:.4f}, linear probe "
                  f"{info.get('final_linear', float('nan')):.4f} ({info['wall_seconds']:.0f} s)")
            run_dirs.append(run_dir)
    report = write_report(run_dirs, out)
    print()
    print(Path(report).read_text())
    print(f"report: {report}")
    for png in sorted(out.glob("*.png")):
        print(f"plot:   {png}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0
