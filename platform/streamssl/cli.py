"""The `streamssl` command line: one sub-command per module in `streamssl.commands`.

Each command module defines `register(subparsers)` (adds its parser and sets `func`), so a
command is added by writing one file and naming it in COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from streamssl.errors import StreamSSLError

COMMANDS = ["prepare", "score", "stream", "run", "report", "demo", "bench", "submit", "jobs", "tune", "experiment"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamssl", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"streamssl.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except StreamSSLError as err:
        print(f"streamssl {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"streamssl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
