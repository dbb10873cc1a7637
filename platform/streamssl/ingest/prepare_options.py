"""What every source receives from `prepare`: the parsed, validated options.

A leaf module: the sources import it, and `prepare` (which imports the sources) builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamssl.ingest.writer import DEFAULT_SHARD_BYTES, DEFAULT_SHARD_SIZE


@dataclass(frozen=True)
class PrepareOptions:
    """Options shared by all sources (source-specific ones are validated by the source).

    Attributes:
        source: source name, e.g. "cifar100".
        shard_size: samples per output shard.
        shard_bytes: a shard is closed once it passes this many bytes.
        strict: stop at the first bad sample (DataError) instead of skipping it.
        verify: check that each image opens (header only) where the source allows skipping it.
        test_path: a second input holding the test split (imagefolder, wds).
        parallel: run per-file work on Ray Data (None: when there are 2 or more tasks).
        progress: show a progress bar (None: only on a terminal).
    """

    source: str
    shard_size: int = DEFAULT_SHARD_SIZE
    shard_bytes: int = DEFAULT_SHARD_BYTES
    strict: bool = False
    verify: bool = True
    test_path: Path | None = None
    parallel: bool | None = None
    progress: bool | None = None

    @property
    def bar_disable(self) -> bool | None:
        """tqdm's `disable`: None lets tqdm hide the bar when stderr is not a terminal."""
        return None if self.progress is None else not self.progress
