"""Read planning: rank rows -> byte ranges (pure, no Ray)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamssl.errors import ConfigError
from streamssl.streams.reader import read_chunks
from streamssl.streams.split import rank_split, unused_message


def write_index(tmp_path, n=100, per_shard=40, nbytes=1024):
    pos = np.arange(n)
    shard = [f"stream-{p // per_shard:06d}.tar" for p in pos]
    offset = (pos % per_shard) * nbytes
    pq.write_table(pa.table({"pos": pos, "shard": shard, "offset": offset, "nbytes": np.full(n, nbytes)}),
                   tmp_path / "index.parquet")
    return tmp_path


def test_rank_split_blocks_equal_counts_and_remainder():
    splits = [rank_split(23, r, 2, 5) for r in range(2)]
    assert [s.rows().tolist() for s in splits] == [[0, 1, 2, 3, 4, 10, 11, 12, 13, 14],
                                                   [5, 6, 7, 8, 9, 15, 16, 17, 18, 19]]
    assert splits[0].remainder == (20, 23) and splits[1].num_samples == 10
    assert splits[1].row_of(np.array([0, 6, 9])).tolist() == [5, 16, 19]
    with pytest.raises(ConfigError, match="rank"):
        rank_split(10, 2, 2, 1)


def test_one_rank_reads_every_row_including_a_short_last_block():
    split = rank_split(60, 0, 1, 16)  # 3 blocks of 16 and one of 12
    assert split.num_samples == 60 and split.rows().tolist() == list(range(60))
    assert split.blocks_per_rank == 4 and split.remainder == (60, 60)
    assert unused_message(60, 1, 16) is None


def test_unused_samples_of_several_workers_are_counted_in_plain_words():
    message = unused_message(60, 2, 16)  # one round of 2 x 16 fits; 28 samples are left
    assert message.startswith("the last 28 of the stream's 60 samples are not used")
    assert "rank" not in message and "remainder" not in message and "block" not in message
    assert unused_message(64, 2, 16) is None


def test_world_size_one_is_a_sequential_scan_in_shard_ranges(tmp_path):
    chunks = read_chunks(str(write_index(tmp_path)), rank_split(100).rows(), chunk_bytes=20 * 1024)
    assert np.array_equal(np.concatenate([c.positions for c in chunks]), np.arange(100))
    ranges = [r for c in chunks for r in c.ranges]
    assert sum(stop - start for _, start, stop in ranges) == 100 * 1024  # every byte read once
    assert len(chunks) == 5


def test_ranks_read_only_near_their_own_bytes(tmp_path):
    write_index(tmp_path, n=100, per_shard=100, nbytes=300 << 10)  # gaps too big to read through
    for rank in range(2):
        rows = rank_split(100, rank, 2, 10).rows()
        chunks = read_chunks(str(tmp_path), rows, chunk_bytes=1 << 30)
        assert np.array_equal(np.concatenate([c.positions for c in chunks]), rows)
        assert sum(c.num_bytes for c in chunks) == len(rows) * (300 << 10)  # no other rank's bytes


def test_chunks_cut_only_between_runs_of_the_batch_size(tmp_path):
    from streamssl.streams.split import chunk_ids

    assert chunk_ids(np.full(10, 100), 250).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert chunk_ids(np.full(10, 100), 250, align=4).tolist() == [0] * 4 + [1] * 4 + [3] * 2  # ids may skip
    rows = rank_split(100, 1, 2, 7).rows()  # runs of 7 rows, every other one
    chunks = read_chunks(str(write_index(tmp_path)), rows, chunk_bytes=10_000, align=7)
    assert len(chunks) > 1 and all(len(c.positions) % 7 == 0 for c in chunks)
    assert np.array_equal(np.concatenate([c.positions for c in chunks]), rows)
