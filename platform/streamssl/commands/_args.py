"""Argument types and checks shared by the sub-commands: a bad value is one line naming the flag.

Used as argparse `type=` (argparse prints `argument --threads: must be ...`) or, for `--out`, by
`streamssl.cli` on every command before it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamssl import fsio
from streamssl.errors import ConfigError


def _integer(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (thread counts, sizes)."""
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds: numpy takes no negative seed)."""
    return _integer(text, 0)


def check_out(args: argparse.Namespace) -> None:
    """ConfigError when `--out` names an existing file, or a path below one, where a folder must go.

    `submit`'s --out is a path on the cluster, not here, and is left alone.
    """
    out = getattr(args, "out", None)
    if not out or args.command == "submit" or fsio.is_uri(out):  # an object store has no folders to create
        return
    path = Path(out).expanduser()
    for folder in (path, *path.parents):
        if fsio.exists(folder):
            if not fsio.is_dir(folder):
                where = "" if folder == path else f" ({folder} is a file)"
                raise ConfigError(f"--out: {out} is not a folder and cannot become one{where}")
            return
