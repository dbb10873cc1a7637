"""User-facing errors: the CLI prints them as one line and exits with their code."""


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
