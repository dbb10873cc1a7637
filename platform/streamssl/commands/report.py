"""`streamssl report RUN_DIR... --out DIR`: Table 1-style report.md and figures over run directories."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report", help="summarize run directories: report.md (Table 1 layout) and PNG figures",
        description="Write DIR/report.md (final kNN per method x stream with the untrained reference, "
                    "accuracy at 20% of the stream, forgetting, seen-class accuracy, AUC) and "
                    "knn_vs_progress.png, grad_cosine.png, buffer_composition.png in DIR.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run directories (streamssl run --out)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created if needed)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from streamssl.report import FIGURE_FILES, write_report  # matplotlib loads only when run

    path = write_report(args.run_dirs, args.out)
    print(f"report: {path}")
    for name in FIGURE_FILES:
        if (path.parent / name).is_file():
            print(f"plot:   {path.parent / name}")
    return 0
