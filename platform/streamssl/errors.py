"""User-facing errors: the CLI prints them as one line and exits with their code."""

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
