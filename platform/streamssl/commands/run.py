"""`streamssl run PIPELINE.yaml [key=value ...] --out RUN_DIR`, or `--resume RUN_DIR`."""

from __future__ import annotations

import argparse

from streamssl import fsio
from streamssl.errors import StreamSSLError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="prepare -> stream -> learn -> evaluate -> report")
    parser.add_argument("pipeline", nargs="?", help="pipeline YAML (see pipelines/); omit with --resume")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    parser.add_argument("--out", help="run directory to write (new or empty)")
    parser.add_argument("--overwrite", action="store_true",
                        help="--out holds an earlier run: delete its files (TensorBoard events included) first")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its newest checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad sample (dataset.strict=true)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from streamssl.pipeline import run_pipeline

    args.overrides += ["dataset.strict=true"] if args.strict else []
    run_dir, config = _resume_target(args) if args.resume else _new_target(args)
    info = run_pipeline(config, run_dir, progress=not args.no_progress, resume=bool(args.resume))
    if info.get("already_completed"):
        print(f"{run_dir}: the run already completed ({info['method']} on {info['stream']}, final kNN "
              f"{info.get('final_knn', float('nan')):.4f}); nothing to resume")
        return 0
    print(f"{info['method']} on {info['stream']}: final kNN {info['final_knn']:.4f}, linear probe "
          f"{info.get('final_linear', float('nan')):.4f} after "
          f"{info['updates']} updates, {info['wall_seconds']:.1f} s; report: {fsio.join(run_dir, 'report.md')}")
    return 0


def _resume_target(args: argparse.Namespace):
    from streamssl import resolve

    run_dir = args.resume
    if args.pipeline and "=" in args.pipeline:  # `run --resume DIR key=value`: argparse took it as the pipeline
        args.overrides.insert(0, args.pipeline)
    elif args.pipeline:
        raise StreamSSLError("--resume takes the pipeline from RUN_DIR/config.yaml; drop PIPELINE")
    if args.out or args.overwrite:
        raise StreamSSLError("--resume continues RUN_DIR in place; drop --out/--overwrite")
    config_file = fsio.join(run_dir, "config.yaml")
    if not fsio.is_file(config_file):
        raise StreamSSLError(f"--resume {run_dir}: no config.yaml (not a run directory?)")
    return run_dir, resolve.load(fsio.local_copy(config_file), args.overrides)


def _new_target(args: argparse.Namespace):
    from streamssl import resolve
    from streamssl.pipeline.lifecycle import check_out_dir

    if not args.pipeline or not args.out:
        raise StreamSSLError("run needs PIPELINE.yaml and --out RUN_DIR (or --resume RUN_DIR)")
    config = resolve.load(args.pipeline, args.overrides)  # a bad config says so before --out is looked at
    run_dir = fsio.absolute(args.out)
    check_out_dir(run_dir, args.overwrite)
    return run_dir, config
