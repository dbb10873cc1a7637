"""The rank split of a stream: block t (rows t*block .. t*block+block-1) goes to rank t mod W.

Every rank gets the same number of blocks, so data-parallel workers take the same number of steps
and stay aligned in stream time; the trailing rows that cannot be dealt evenly (fewer than W full
blocks, plus any partial block) form the remainder, which callers report rather than drop
silently. Rows are the materialized stream's rows in order (row i has position i unless samples
were skipped while materializing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamssl.errors import ConfigError


@dataclass(frozen=True)
class RankSplit:
    """Which stream rows one rank reads.

    Attributes:
        rank, world_size, block: the split's arguments.
        blocks_per_rank: full blocks every rank gets (equal on all ranks).
        num_samples: rows this rank gets, blocks_per_rank * block.
        remainder: (start, stop) rows read by no rank; empty when start == stop.
    """

    rank: int
    world_size: int
    block: int
    blocks_per_rank: int
    num_samples: int
    remainder: tuple[int, int]

    def rows(self) -> np.ndarray:
        """(num_samples,) int64 row numbers of this rank, increasing."""
        starts = (np.arange(self.blocks_per_rank, dtype=np.int64) * self.world_size + self.rank) * self.block
        return (starts[:, None] + np.arange(self.block, dtype=np.int64)).ravel()


def rank_split(num_rows: int, rank: int = 0, world_size: int = 1, block: int = 1) -> RankSplit:
    """Split `num_rows` stream rows for `rank` of `world_size` in blocks of `block` rows.

    Raises:
        ConfigError: world_size < 1, rank outside [0, world_size) or block < 1.
    """
    if world_size < 1 or block < 1:
        raise ConfigError(f"world_size={world_size}, block={block}: both must be >= 1")
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank={rank}: must be in [0, {world_size})")
    blocks_per_rank = num_rows // block // world_size
    used = blocks_per_rank * world_size * block
    return RankSplit(rank, world_size, block, blocks_per_rank, blocks_per_rank * block,
                     (used, num_rows))
