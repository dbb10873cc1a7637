"""The `streamssl` command line: one sub-command per module in `streamssl.commands`.

Each command module defines `register(subparsers)` (adds its parser and sets `func`), so a
command is added by writing one file and naming it in COMMANDS.

Bad input ends in one line on stderr and exit code 2, never a traceback: argparse's own errors,
`--out` naming a file, every StreamSSLError, and, as a last line of defence, text that is not
UTF-8 and OS errors on a named file (`-v` shows their traceback).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from streamssl.commands._args import check_out
from streamssl.errors import StreamSSLError, error_line

COMMANDS = ["prepare", "score", "columns", "stream", "run", "report", "export", "eval", "demo", "bench", "submit",
            "jobs", "tune", "experiment"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (its default prints the usage block first)."""

    def error(self, message: str):
        self.exit(2, error_line(self.prog, f"{message} (see {self.prog} --help)") + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="streamssl", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"streamssl.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    # read at `import ray`: a Ray Data iterator collected after Ray stopped (at exit, after an error)
    # would otherwise start a second local Ray, which can hang the exit; commands start Ray themselves
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a bad argument already reported in one line
        return done.code if isinstance(done.code, int) else 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        check_out(args)
        return int(args.func(args) or 0)
    except StreamSSLError as err:
        return _fail(args, str(err), err.exit_code)
    except UnicodeDecodeError as err:
        if args.verbose:
            raise
        return _fail(args, f"input is not UTF-8 text ({err.reason} at byte {err.start})", 2)
    except OSError as err:
        if args.verbose or err.filename is None:
            raise
        return _fail(args, f"{err.filename}: {err.strerror or err}", 2)
    except KeyboardInterrupt:
        print(f"streamssl {args.command}: interrupted", file=sys.stderr)
        return 130


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    print(error_line(f"streamssl {args.command}", message), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
