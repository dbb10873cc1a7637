"""`streamssl demo`: the main job on the embedded default (Debian's Fashion-MNIST, CPU preset).

Prepares Fashion-MNIST, builds its iid / seq / seq-bl / seq-im streams (summaries + a PNG of the
class at each stream position), then trains the paper's four methods (imai, empssl, minred, scale)
on seq, seq-bl and seq-im and ends with the Table-1-style report and the paths of its plots.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from streamssl.errors import ConfigError

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


def _names(text: str, known, flag: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(f"{flag}: unknown name {unknown[0] if unknown else text!r} (choose from {', '.join(known)})")
    return names


def plan_runs(args: argparse.Namespace) -> list[tuple[str, str, object]]:
    """(stream kind, method, config) of every run, each loaded and validated before any work."""
    from streamssl import config as cfg
    from streamssl.methods import METHODS
    from streamssl.streams.plan import KINDS

    methods, kinds = _names(args.methods, sorted(METHODS), "--methods"), _names(args.streams, KINDS, "--streams")
    return [(kind, method, cfg.load(args.pipeline, args.overrides + [f"method.name={method}", f"stream.kind={kind}",
                                                                     f"name={method}-{kind}"]))
            for kind in kinds for method in methods]


def main(args: argparse.Namespace) -> int:
    from streamssl.report import write_report
    from streamssl.train.runner import run_pipeline
    from streamssl.validation import check_before_work

    runs = plan_runs(args)
    check_before_work(runs[0][2])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    build_streams(args.pipeline, args.overrides, out)
    if args.streams_only:
        return 0
    run_dirs = []
    for kind, method, config in runs:
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
