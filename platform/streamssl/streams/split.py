"""The rank split of a stream: block t (rows t*block .. t*block+block-1) goes to rank t mod W.

One rank reads every row (its last block may be short). With W > 1 ranks every rank gets the same
number of full blocks, so data-parallel workers take the same number of steps and stay aligned
in stream time; the trailing rows that cannot be dealt evenly (fewer than W full blocks, plus any
partial block) form the remainder, which callers report (`unused_message`) rather than drop
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
        blocks_per_rank: blocks every rank gets (equal on all ranks; with one rank the last one
            may be short).
        num_samples: rows this rank gets: blocks_per_rank * block, or every row with one rank.
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
        return self.row_of(np.arange(self.num_samples, dtype=np.int64))

    def row_of(self, i: np.ndarray) -> np.ndarray:
        """The stream rows of this rank's i-th rows (`rows()[i]`, without building all of it)."""
        i = np.asarray(i, dtype=np.int64)
        if self.world_size == 1:
            return i
        return ((i // self.block) * self.world_size + self.rank) * self.block + i % self.block

    def rows_between(self, lo: int, hi: int) -> np.ndarray:
        """This rank's rows in [lo, hi): `rows()` restricted, without building all of it."""
        rows = np.arange(lo, min(hi, self.remainder[0]), dtype=np.int64)
        return rows[(rows // self.block) % self.world_size == self.rank]


def rank_split(num_rows: int, rank: int = 0, world_size: int = 1, block: int = 1) -> RankSplit:
    """Split `num_rows` stream rows for `rank` of `world_size` in blocks of `block` rows.

    Raises:
        ConfigError: world_size < 1, rank outside [0, world_size) or block < 1.
    """
    if world_size < 1 or block < 1:
        raise ConfigError(f"world_size={world_size}, block={block}: both must be >= 1")
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank={rank}: must be in [0, {world_size})")
    if world_size == 1:  # nothing to keep in step with: the last, short block is read too
        return RankSplit(rank, 1, block, -(-num_rows // block), num_rows, (num_rows, num_rows))
    blocks_per_rank = num_rows // block // world_size
    used = blocks_per_rank * world_size * block
    return RankSplit(rank, world_size, block, blocks_per_rank, blocks_per_rank * block,
                     (used, num_rows))


def unused_message(num_rows: int, world_size: int, block: int) -> str | None:
    """In plain words, how many of a stream's samples W workers leave out and why; None if none."""
    split = rank_split(num_rows, 0, world_size, block)
    unused = split.remainder[1] - split.remainder[0]
    if not unused:
        return None
    return (f"the last {unused} of the stream's {num_rows} samples are not used: the {world_size} workers "
            f"take batches of {block} samples in turns and must all train on the same number of batches, so "
            f"only whole rounds of {world_size} x {block} = {world_size * block} samples are used "
            f"(a stream length divisible by {world_size * block}, or one worker, uses every sample)")


def chunk_ids(nbytes: np.ndarray, chunk_bytes: int, align: int = 1) -> np.ndarray:
    """(R,) the read task of each of a rank's rows: about `chunk_bytes` encoded bytes per task, cut
    only between runs of `align` rows.

    With `align` = the split's block (= the consumer's batch size), every stream batch lies inside
    one Ray block, so Ray's batcher hands it out as a zero-copy slice instead of concatenating
    (copying) the tails of two blocks.
    """
    run = np.arange(len(nbytes)) // max(align, 1)
    run_bytes = np.bincount(run, weights=nbytes)
    return ((np.cumsum(run_bytes) - run_bytes) // chunk_bytes).astype(np.int64)[run]


def task_groups(num_chunks: int, max_tasks: int) -> np.ndarray:
    """(T + 1,) bounds of read tasks over consecutive chunks: task t reads chunks [b[t], b[t + 1]).

    Up to `max_tasks` chunks, one chunk per task. Beyond, chunks are grouped: Ray Data serializes
    every read task before the first one runs (~1 ms each), so 100,000 one-chunk tasks would
    delay the first batch by minutes. Group sizes double from 1 chunk up to the size that keeps
    T <= max_tasks: the first block still comes from a task of one chunk.
    """
    if num_chunks <= max_tasks:
        return np.arange(num_chunks + 1, dtype=np.int64)
    even = -(-num_chunks // max_tasks)
    for size in range(even, 2 * even):  # the ramp's few extra tasks need a slightly larger size
        sizes = _ramped_sizes(num_chunks, size)
        if len(sizes) <= max_tasks:
            return np.r_[0, np.cumsum(sizes)].astype(np.int64)
    return np.r_[np.arange(0, num_chunks, even), num_chunks].astype(np.int64)  # a cap too small to ramp


def _ramped_sizes(num_chunks: int, size: int) -> np.ndarray:
    """Group sizes 1, 2, 4, ... (below `size`), then `size` until `num_chunks` are covered."""
    ramp = 1 << np.arange((size - 1).bit_length(), dtype=np.int64)
    ramp = ramp[np.cumsum(ramp) <= num_chunks]
    rest = num_chunks - int(ramp.sum())
    tail = [rest % size] if rest % size else []
    return np.r_[ramp, np.full(rest // size, size, dtype=np.int64), tail].astype(np.int64)
