"""`streamssl tune SEARCH.yaml --out DIR [--resume] [--address URL]`: a Ray Tune search over a pipeline."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tune", help="Ray Tune search over a pipeline (see tune/README.md)")
    parser.add_argument("spec", help="search spec YAML: base pipeline, space, search settings")
    parser.add_argument("--out", help="search directory: leaderboard, best.yaml, figures, trials/ "
                        "(with --address: an absolute path on the cluster, default $STREAMSSL_RUNS/JOB_ID)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the search in --out; finished trials are not rerun")
    parser.add_argument("--address", help="run the whole search on this cluster as a Ray job "
                        "(Jobs API URL, e.g. http://HOST:8265) and follow it")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from streamssl.errors import StreamSSLError
    from streamssl.tune.spec import load_spec

    spec = load_spec(args.spec)  # every bad input fails here, before Ray or a network call
    if args.address:
        return _remote(spec, args)
    if not args.out:
        raise StreamSSLError("tune needs --out DIR (the search directory)")
    return _local(spec, args.out, args.resume)


def _local(spec, out: str, resume: bool) -> int:
    from streamssl import fsio
    from streamssl.tune.leaderboard import best_row, records_from_results, write_outputs
    from streamssl.tune.search import run_search

    grid = run_search(spec, out, resume=resume)
    frame = write_outputs(spec, records_from_results(grid, spec), fsio.absolute(out))
    best = best_row(frame)
    done = int((frame["status"] == "completed").sum()) if len(frame) else 0
    summary = (f"best trial {best['trial']}: final kNN {best['final_knn']:.4f} -> {fsio.join(out, 'best.yaml')}"
               if best else "no trial completed")
    print(f"{len(frame)} trials, {done} completed; {summary}; leaderboard: {fsio.join(out, 'leaderboard.md')}")
    return 0 if best else 1


def _remote(spec, args: argparse.Namespace) -> int:
    from streamssl import jobs
    from streamssl.tune import remote

    return jobs.submit_and_follow(args.address, remote, spec, args.out, args.resume)
