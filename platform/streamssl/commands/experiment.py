"""`streamssl experiment SPEC.yaml --out DIR [--resume] [--address URL]`: seeded runs of a matrix
of methods x streams (x grid) on Ray, with confidence intervals and paired tests."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("experiment", help="methods x streams x seeds on Ray: Table 1 with 95%% intervals "
                            "and paired tests (see experiments/)")
    parser.add_argument("spec", help="experiment spec YAML: base pipeline, methods, streams, seeds, "
                        "overrides, grid, reference, max_concurrent")
    parser.add_argument("--out", help="experiment directory: runs/, summary.csv, comparisons.csv, report.md "
                        "(with --address: an absolute path on the cluster, default $STREAMSSL_RUNS/JOB_ID)")
    parser.add_argument("--resume", action="store_true",
                        help="finish the experiment in --out: rerun only runs that are missing or not completed")
    parser.add_argument("--address", help="run the whole experiment on this cluster as a Ray job "
                        "(Jobs API URL, e.g. http://HOST:8265) and follow it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar over the runs")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from streamssl.errors import StreamSSLError
    from streamssl.experiment.spec import load_spec

    spec = load_spec(args.spec)  # every bad input fails here, before Ray, a network call or a folder
    if args.address:
        return _remote(spec, args)
    if not args.out:
        raise StreamSSLError("experiment needs --out DIR (the experiment directory)")
    return run_and_report(spec, args.out, args.resume, progress=not args.no_progress)


def run_and_report(spec, out: str | Path, resume: bool, progress: bool = True) -> int:
    """Run (or finish) the experiment, write its outputs, print Table 1 and the significant
    differences; 0 when every run completed, 1 when some failed (their errors are listed)."""
    from streamssl import fsio
    from streamssl.experiment.outputs import write_outputs
    from streamssl.experiment.schedule import run_experiment

    outcomes = run_experiment(spec, out, resume=resume, progress=progress)
    files, text = write_outputs(spec, fsio.absolute(out))
    print()
    print(text)
    width = max(map(len, files)) + 2
    for name, path in files.items():
        print(f"{name + ':':{width}s}{path}")
    failed = [o for o in outcomes if o.status == "failed"]
    for outcome in failed:
        print(f"FAILED {outcome.name}: {outcome.error}")
    print(f"{len(outcomes)} runs: {len(outcomes) - len(failed)} completed, {len(failed)} failed"
          + ("; rerun them with --resume" if failed else ""))
    return 1 if failed else 0


def _remote(spec, args: argparse.Namespace) -> int:
    from streamssl import jobs
    from streamssl.experiment import remote

    return jobs.submit_and_follow(args.address, remote, spec, args.out, args.resume)
