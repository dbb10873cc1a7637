"""`streamssl jobs list|status ID|logs ID [--follow]|stop ID --address URL`: manage cluster jobs."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("jobs", help="list, inspect, follow or stop jobs on a Ray cluster")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text, handler in (("list", "all jobs, oldest first", _list),
                                     ("status", "a job's status, message and run dir", _status),
                                     ("logs", "a job's logs", _logs),
                                     ("stop", "stop a running job", _stop)):
        action = actions.add_parser(name, help=help_text)
        if name != "list":
            action.add_argument("job_id", metavar="ID", help="submission id (printed by streamssl submit)")
        if name == "logs":
            action.add_argument("--follow", action="store_true", help="stream until the job ends")
        action.add_argument("--address", help="Jobs API URL (default: RAY_API_SERVER_ADDRESS, RAY_ADDRESS)")
        action.set_defaults(func=handler)


def _list(args: argparse.Namespace) -> int:
    from streamssl import jobs

    print("\n".join(jobs.format_jobs(jobs.list_jobs(jobs.connect(args.address)))))
    return 0


def _status(args: argparse.Namespace) -> int:
    from streamssl import jobs

    print("\n".join(jobs.describe(jobs.connect(args.address), args.job_id)))
    return 0


def _logs(args: argparse.Namespace) -> int:
    """Print the logs; with --follow, stream them and exit non-zero unless the job SUCCEEDED."""
    from streamssl import jobs

    client = jobs.connect(args.address)
    if not args.follow:
        print(jobs.logs(client, args.job_id), end="")
        return 0
    status = jobs.follow(client, args.job_id)
    print(status, flush=True)
    jobs.require_success(client, args.job_id, status)
    return 0


def _stop(args: argparse.Namespace) -> int:
    from streamssl import jobs

    stopped = jobs.stop(jobs.connect(args.address), args.job_id)
    print(f"{args.job_id}: stop requested" if stopped else f"{args.job_id}: already finished")
    return 0
