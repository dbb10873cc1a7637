"""`streamssl submit PIPELINE.yaml --address URL [--follow] [key=value ...]`: run a pipeline on a cluster."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("submit", help="submit a pipeline to a Ray cluster as a job (Ray Jobs API)")
    parser.add_argument("pipeline", help="pipeline YAML, resolved and validated here, shipped inline")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    parser.add_argument("--address", help="Jobs API URL, e.g. http://127.0.0.1:8265 "
                        "(default: RAY_API_SERVER_ADDRESS, then RAY_ADDRESS)")
    parser.add_argument("--out", help="absolute run directory on the cluster's shared storage "
                        "(default: $STREAMSSL_RUNS/JOB_ID on the cluster)")
    parser.add_argument("--follow", action="store_true", help="stream the logs and wait for the end")
    parser.add_argument("--env", action="append", metavar="KEY=VALUE", help="job environment variable")
    parser.add_argument("--entrypoint-num-cpus", type=float, help="CPUs reserved for the driver")
    parser.add_argument("--entrypoint-num-gpus", type=float,
                        help="GPUs reserved for the driver (puts an in-process run on a GPU node)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from streamssl import jobs

    job = jobs.prepare(args.pipeline, args.overrides, out=args.out, env=jobs.parse_env(args.env))
    client = jobs.connect(args.address)
    job_id = jobs.submit(client, job, num_cpus=args.entrypoint_num_cpus, num_gpus=args.entrypoint_num_gpus)
    print(job_id, flush=True)
    if not args.follow:
        print(f"follow it with: streamssl jobs logs {job_id} --follow --address {client.get_address()}",
              file=sys.stderr)
        return 0
    return jobs.follow_to_end(client, job_id)
