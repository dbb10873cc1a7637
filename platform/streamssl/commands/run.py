"""`streamssl run PIPELINE.yaml [key=value ...] --out RUN_DIR`: one pipeline end to end."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="prepare -> stream -> learn -> evaluate -> report")
    parser.add_argument("pipeline", help="pipeline YAML (see pipelines/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    parser.add_argument("--out", required=True, help="run directory to write")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from streamssl import config as cfg
    from streamssl.train.runner import run_pipeline

    config = cfg.load(args.pipeline, args.overrides)
    info = run_pipeline(config, Path(args.out), progress=not args.no_progress)
    print(f"{info['method']} on {info['stream']}: final kNN {info['final_knn']:.4f} after "
          f"{info['updates']} updates, {info['wall_seconds']:.1f} s; report: {Path(args.out) / 'report.md'}")
    return 0
