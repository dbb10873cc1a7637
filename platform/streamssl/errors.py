"""User-facing errors: the CLI prints them as one line and exits with their code.

The one place that says how an error reads on one line: `first_line` (an exception's message cut to
its first line, as other errors quote it) and `error_line` (the CLI's stderr line).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager


class StreamSSLError(Exception):
    """A problem the user can fix (bad argument, bad config, bad data with --strict). Exit code 2."""

    exit_code = 2


class ConfigError(StreamSSLError):
    """An invalid pipeline or search config; the message names the offending key."""


class DataError(StreamSSLError):
    """Bad input data under --strict; the message names the shard or file."""


class TrainingError(StreamSSLError):
    """A run that cannot go on (NaN loss and the like); the message says where it stopped."""

    exit_code = 3


@contextmanager
def renamed(names: Mapping[str, str] | Callable[[str], str | None]) -> Iterator[None]:
    """Re-raise a StreamSSLError whose message starts with `NAME: ` under the caller's name for NAME.

    Library functions name their own arguments (`blend_ratio: ...`); a caller maps them to what
    its user typed: the `stream` command to `--blend-ratio`, a pipeline to `stream.blend_ratio`.
    `names` is a dict or a function returning the new name (None: keep the message).
    """
    lookup = names.get if isinstance(names, Mapping) else names
    try:
        yield
    except StreamSSLError as err:
        head, sep, rest = str(err).partition(": ")
        new = lookup(head) if sep and " " not in head else None
        if new and new != head:
            err.args = (f"{new}: {rest}",)
        raise


def first_line(err: BaseException) -> str:
    """The first line of err's message (its type name when the message is empty), for quoting a
    library's multi-line error inside a one-line StreamSSLError."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def error_line(prog: str, message: str) -> str:
    """The one line the CLI prints for an error: `PROG: error: MESSAGE` with whitespace collapsed."""
    return f"{prog}: error: {' '.join(message.split())}"
