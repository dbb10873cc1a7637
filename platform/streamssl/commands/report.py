"""`streamssl report RUN_DIR... --out DIR`: Table 1-style report.md and figures over run directories."""

from __future__ import annotations

import argparse

from streamssl import fsio
from streamssl.errors import StreamSSLError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report", help="summarize run directories: report.md (Table 1 layout) and PNG figures",
        description="Write DIR/report.md (final kNN per method x stream with the untrained reference, "
                    "accuracy at 20% of the stream, forgetting, seen-class accuracy, AUC) and "
                    "knn_vs_progress.png, grad_cosine.png, buffer_composition.png in DIR.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run directories (streamssl run --out)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output directory (created if needed); not a run, dataset or stream directory")
    parser.set_defaults(func=handle)


def check_report_out(out: str, run_dirs: list) -> None:
    """Refuse to write a report over another run's own report, or into a dataset or stream.

    A run directory is accepted only as the report of that one run (what `run` writes there).
    """
    if fsio.exists(out) and not fsio.is_dir(out):
        raise StreamSSLError(f"--out {out}: is a file, not a directory")
    for marker, what in (("dataset.json", "a prepared dataset"), ("stream.json", "a materialized stream")):
        if fsio.exists(fsio.join(out, marker)):
            raise StreamSSLError(f"--out {out}: is {what}; write the report to a new directory")
    own = {fsio.absolute(d) for d in run_dirs} == {fsio.absolute(out)}
    if not own and (fsio.exists(fsio.join(out, "run.json")) or fsio.exists(fsio.join(out, "metrics.parquet"))):
        raise StreamSSLError(f"--out {out}: is a run directory and would lose its own report; "
                             f"write the report to a new directory")


def handle(args: argparse.Namespace) -> int:
    from streamssl.report import FIGURE_FILES, write_report  # matplotlib loads only when run

    check_report_out(args.out, args.run_dirs)
    path = write_report(args.run_dirs, args.out)
    print(f"report: {path}")
    for name in FIGURE_FILES:
        if fsio.is_file(fsio.join(fsio.parent(path), name)):
            print(f"plot:   {fsio.join(fsio.parent(path), name)}")
    return 0
