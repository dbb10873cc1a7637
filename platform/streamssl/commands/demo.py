"""`streamssl demo`: the main job on the embedded default (Debian's Fashion-MNIST, CPU preset).

Prepares Fashion-MNIST, builds its iid / seq / seq-bl / seq-im streams (summaries + a PNG of the
class at each stream position), then runs the experiment `experiments/demo.yaml` (the paper's four
methods x seq, seq-bl, seq-im x three seeds, through `streamssl experiment`) into OUT/experiment
and ends with Table 1 with 95% intervals and the differences that are significant.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SPEC = Path(__file__).resolve().parents[3] / "experiments" / "demo.yaml"
STREAMS = ["iid", "seq", "seq-bl", "seq-im"]
EXPERIMENT = "experiment"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="Fashion-MNIST streams + imai vs empssl vs minred vs scale, 3 seeds "
                            "(CPU preset, experiments/demo.yaml)")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--spec", default=str(SPEC), help="experiment spec to run (default experiments/demo.yaml)")
    parser.add_argument("--streams-only", action="store_true", help="stop after building the streams")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar over the runs")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for every run")
    parser.set_defaults(func=main)


def build_streams(spec, out: Path) -> dict[str, Path]:
    """Every stream kind of the spec's base pipeline (seed: the spec's first), summarized and plotted."""
    from streamssl.experiment.spec import RunSpec, run_config
    from streamssl.pipeline import ensure_dataset, ensure_stream
    from streamssl.ray_setup import init_ray
    from streamssl.streams import plot_stream_classes, summarize_stream

    configs = {kind: run_config(spec, RunSpec(spec.methods[0], kind, spec.seeds[0])) for kind in STREAMS}
    dataset_dir = ensure_dataset(configs["seq"])
    init_ray()
    dirs = {}
    for kind, config in configs.items():
        dirs[kind] = ensure_stream(config, dataset_dir)
        print(summarize_stream(dirs[kind]), end="\n\n")
    png = out / "streams.png"
    plot_stream_classes([str(d) for d in dirs.values()], str(png))
    print(f"stream class plot: {png}")
    return dirs


def main(args: argparse.Namespace) -> int:
    from streamssl import config as cfg
    from streamssl.commands.experiment import run_and_report
    from streamssl.experiment.schedule import STATE_FILE
    from streamssl.experiment.spec import load_spec

    spec = load_spec(args.spec, cfg.parse_overrides(args.overrides))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    build_streams(spec, out)
    if args.streams_only:
        return 0
    experiment = out / EXPERIMENT
    resume = (experiment / STATE_FILE).is_file()
    if resume:  # `make demo` again finishes (or just re-reports) the demo instead of refusing
        print(f"resuming the experiment in {experiment} (completed runs are kept; delete it for a fresh demo)")
    code = run_and_report(spec, experiment, resume, progress=not args.no_progress)
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return code
