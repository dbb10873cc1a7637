"""`streamssl columns DATASET_DIR --from FILE.csv|FILE.parquet [--key COLUMN]`: per-sample columns into the manifest."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("columns", help="join per-sample columns (times, frame indices, domains) into a manifest",
                       description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("dataset_dir", metavar="DATASET_DIR", help="a `streamssl prepare` output folder")
    p.add_argument("--from", dest="source", required=True, metavar="FILE",
                   help="a .csv or .parquet file, one row per sample")
    p.add_argument("--key", default="key", metavar="COLUMN",
                   help="the file's column naming the sample: matched against the manifest column of the same "
                        "name (default key), or `id`: the id each sample was prepared from (an image folder's "
                        "path relative to the folder)")
    p.add_argument("--replace", action="store_true", help="overwrite manifest columns of the same names")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamssl.ingest.columns import format_summary, join_columns, unmatched_line

    summary = join_columns(args.dataset_dir, args.source, key=args.key, replace=args.replace)
    warning = unmatched_line(summary, args.source)
    if warning:
        print(warning, file=sys.stderr)
    print(format_summary(summary, args.dataset_dir))
    return 0
