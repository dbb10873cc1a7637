"""Reading a materialized stream with Ray Data, in exact stream order (the package's Ray seam).

A stream's samples lie in stream order in `stream-*.tar`, and `index.parquet` holds each sample's
byte range, so a rank's blocks are contiguous byte ranges: each rank reads only its own bytes (a
sequential scan at world size 1) and decodes them inside the read tasks, which run in parallel
while `preserve_order` keeps their output in stream order. No global sort happens at read time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import ray.data
import ray.exceptions
from ray.data import Datasource
from ray.data.block import BlockMetadata
from ray.data.datasource import ReadTask
from ray.data.extensions import ArrowTensorArray

from streamssl import fsio
from streamssl.errors import ConfigError, DataError
from streamssl.ray_setup import set_data_context
from streamssl.streams.decode import decode_samples
from streamssl.streams.layout import stream_info
from streamssl.streams.split import RankSplit, chunk_ids, rank_split, task_groups, unused_message
from streamssl.streams.virtual import is_virtual, virtual_chunks

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 << 20  # encoded bytes per Ray block: amortizes task overhead, keeps blocks modest
# Ray Data puts every read task in the object store (1-2 ms each here) before the first one runs,
# and its scheduler walks the queued ones: 1,000 tasks cost seconds, and still give every CPU of a
# large cluster many tasks. Smaller clusters get READ_TASKS_PER_CPU per CPU. Longer streams group
# chunks into tasks (`split.task_groups`) rather than grow them.
MAX_READ_TASKS = 1_000
READ_TASKS_PER_CPU = 16
MAX_GAP_BYTES = 256 << 10  # other ranks' bytes between two wanted samples: read through, don't seek


def stream_split(stream_dir: str, rank: int = 0, world_size: int = 1, block: int = 1) -> RankSplit:
    """The rows `rank` reads, and the remainder no rank reads (see `streams.split`)."""
    return rank_split(int(stream_info(stream_dir)["num_samples"]), rank, world_size, block)


def rank_num_samples(stream_dir: str, rank: int = 0, world_size: int = 1, block: int = 1) -> int:
    """Samples `read_stream` yields for this rank (equal on every rank)."""
    return stream_split(stream_dir, rank, world_size, block).num_samples


def read_stream(stream_dir: str, *, rank: int = 0, world_size: int = 1, block: int = 1,
                size: int | tuple[int, int] | None = None, chunk_bytes: int = CHUNK_BYTES,
                concurrency: int | None = None, num_cpus: float | None = None):
    """A rank's share of a stream (materialized or virtual) as an ordered Ray Dataset.

    Args:
        stream_dir: a `streamssl stream` output directory.
        rank, world_size, block: rank r reads blocks t (rows t*block .. t*block+block-1) with
            t mod world_size == r; one rank reads every row, several leave out a trailing
            remainder of fewer than world_size full blocks, with a warning saying how many samples
            and why (see `streams.split`).
        size: None keeps each image's native size; an int S or (H, W) resizes (bilinear).
        chunk_bytes: encoded bytes per chunk, cut only between runs of `block` rows, so
            `iter_batches(batch_size=block)` slices batches out of blocks without copying. A read
            task reads one chunk into one Ray block; beyond `max_read_tasks()` chunks a task reads
            several consecutive ones (`split.task_groups`). A virtual stream's task reads its
            samples from the source shards (`streams.virtual`).
        concurrency: at most this many read tasks at once (default: as many as CPUs allow).
        num_cpus: logical CPUs each read task asks for (default Ray Data's 1). Inside Ray Train
            a fraction keeps reads schedulable next to workers and other trials' placement
            groups, which can leave less than one whole CPU free (a read asking for 1 then
            waits forever).

    Returns:
        ray.data.Dataset with rows `key` (str, dataset key), `pos` (int64 stream position),
        `label` (int64, the label the stream segments by), `image` (uint8 (H, W, 3); gray
        images replicated to 3 channels) and `skip` (str: "" when the image decoded, else why not;
        its image is then zeros: drop the row, see `streamssl.train.skips`), in increasing `pos`.
        Rows are never dropped here, so stream batches keep their boundaries on every rank.
    """
    info = stream_info(stream_dir)
    split = rank_split(int(info["num_samples"]), rank, world_size, block)
    unused = unused_message(int(info["num_samples"]), world_size, block)
    if unused:
        log.warning("stream %s: %s", stream_dir, unused)
    if is_virtual(info):
        chunks = virtual_chunks(stream_dir, split, chunk_bytes, max_read_tasks(), info)
    else:
        chunks = group_chunks(read_chunks(stream_dir, split.rows(), chunk_bytes, align=block), max_read_tasks())
    set_data_context()
    # one task per chunk or group: left to itself, Ray Data aims for 200 blocks and slices each task's
    # block into pieces, which costs throughput and breaks the batch-aligned cuts (1.3x on JPEG)
    return ray.data.read_datasource(_StreamDatasource(chunks, _resize_hw(size)), concurrency=concurrency,
                                    num_cpus=num_cpus, override_num_blocks=max(1, len(chunks)),
                                    **_storage_args(stream_dir))


def max_read_tasks() -> int:
    """Read tasks per stream: READ_TASKS_PER_CPU per CPU of the running cluster (counting at
    least 4 CPUs), at most MAX_READ_TASKS."""
    cpus = ray.cluster_resources().get("CPU", 0) if ray.is_initialized() else 0
    return int(min(MAX_READ_TASKS, READ_TASKS_PER_CPU * max(cpus, 4)))


def _storage_args(path: str | None = None) -> dict:
    """Read tasks get the driver's object-store settings: the cluster may have started without them."""
    env = fsio.storage_env() if path is None or fsio.is_uri(path) else {}
    return {"runtime_env": {"env_vars": env}} if env else {}


def _resize_hw(size) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (size, size) if np.ndim(size) == 0 else tuple(size)
    if len(hw) != 2 or min(int(v) for v in hw) < 1:
        raise ConfigError(f"size={size!r}: need a positive int or (H, W)")
    return int(hw[0]), int(hw[1])


@dataclass(frozen=True)
class ReadChunk:
    """One read task: byte ranges to read (in order) and the stream positions to keep.

    A range may cover other ranks' samples between wanted ones (small gaps are read through
    rather than seeked over); `positions` says which samples are this rank's.
    """

    ranges: list[tuple[str, int, int]]  # (path, start, stop)
    positions: np.ndarray  # (B,) int64, increasing

    @property
    def num_bytes(self) -> int:
        return sum(stop - start for _, start, stop in self.ranges)

    @property
    def num_rows(self) -> int:
        return len(self.positions)

    @property
    def paths(self) -> list[str]:
        return sorted({r[0] for r in self.ranges})

    def blocks(self, size: tuple[int, int] | None) -> Iterator[dict[str, np.ndarray]]:
        yield self.decode(size)

    def decode(self, size: tuple[int, int] | None) -> dict[str, np.ndarray]:
        buffers = []
        for path, start, stop in self.ranges:
            with fsio.open_input(path) as f:
                f.seek(start)
                buffers.append((path, f.read(stop - start)))
        return decode_samples(buffers, self.positions, size)


def read_chunks(stream_dir: str, rows: np.ndarray, chunk_bytes: int = CHUNK_BYTES, align: int = 1) -> list[ReadChunk]:
    """Cut a rank's rows (increasing) into read tasks of about `chunk_bytes` encoded bytes each,
    cut only between runs of `align` rows (`split.chunk_ids`)."""
    if len(rows) == 0:
        return []
    index = fsio.read_table(fsio.join(stream_dir, "index.parquet"),
                            columns=["pos", "shard", "offset", "nbytes"], read_dictionary=["shard"])
    shard = index["shard"].combine_chunks()
    codes, pos = shard.indices.to_numpy()[rows], index["pos"].to_numpy()[rows]
    offset, nbytes = index["offset"].to_numpy()[rows], index["nbytes"].to_numpy()[rows]
    chunk = chunk_ids(nbytes, chunk_bytes, align)
    new_chunk = np.r_[True, chunk[1:] != chunk[:-1]]
    gap = offset[1:] - (offset[:-1] + nbytes[:-1])
    new_range = new_chunk | np.r_[True, (codes[1:] != codes[:-1]) | (gap < 0) | (gap > MAX_GAP_BYTES)]
    starts = np.flatnonzero(new_range)
    stops = np.r_[starts[1:], len(rows)] - 1
    names = [fsio.join(stream_dir, name) for name in shard.dictionary.to_pylist()]
    ranges = [(names[codes[a]], int(offset[a]), int(offset[b] + nbytes[b])) for a, b in zip(starts, stops)]
    range_chunk = np.cumsum(new_chunk)[starts] - 1
    first_range = np.searchsorted(range_chunk, np.arange(range_chunk[-1] + 2))
    return [ReadChunk(ranges[first_range[c]:first_range[c + 1]], positions)
            for c, positions in enumerate(np.split(pos, np.flatnonzero(new_chunk)[1:]))]


@dataclass(frozen=True)
class ChunkGroup:
    """One read task of consecutive chunks of a materialized stream, one block per chunk."""

    chunks: tuple[ReadChunk, ...]

    @property
    def num_bytes(self) -> int:
        return sum(c.num_bytes for c in self.chunks)

    @property
    def num_rows(self) -> int:
        return sum(c.num_rows for c in self.chunks)

    @property
    def paths(self) -> list[str]:
        return sorted({p for c in self.chunks for p in c.paths})

    def blocks(self, size: tuple[int, int] | None) -> Iterator[dict[str, np.ndarray]]:
        for chunk in self.chunks:
            yield chunk.decode(size)


def group_chunks(chunks: list[ReadChunk], max_tasks: int) -> list:
    """The chunks as they are, or in at most `max_tasks` groups (`split.task_groups`)."""
    if len(chunks) <= max_tasks:
        return chunks
    bounds = task_groups(len(chunks), max_tasks)
    return [ChunkGroup(tuple(chunks[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]


class _StreamDatasource(Datasource):
    """One read task per chunk (or group of chunks), decoding inside the read.

    A task of one chunk yields exactly one block: Ray's read output buffer concatenates (copies)
    the blocks of a task until they reach `target_max_block_size`, and splitting large blocks is
    zero-copy. A grouped task yields one block per chunk, which Ray concatenates up to that size
    (128 MiB): one copy of the decoded images, paid only by streams long enough to need grouping,
    where it buys minutes of planning; the cuts stay at multiples of `block` rows.
    """

    def __init__(self, chunks: list, size: tuple[int, int] | None):
        super().__init__()
        self._chunks, self._size = chunks, size

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None) -> list[ReadTask]:
        return [ReadTask(partial(_read_chunk, chunk, self._size),
                         BlockMetadata(num_rows=chunk.num_rows, size_bytes=chunk.num_bytes,
                                       input_files=chunk.paths, exec_stats=None))
                for chunk in self._chunks]

    def get_name(self) -> str:
        return "ReadStream"


def _read_chunk(chunk, size) -> Iterator[pa.Table]:
    for batch in chunk.blocks(size):
        yield _to_block(batch)


def _to_block(batch: dict[str, np.ndarray]) -> pa.Table:
    # direct construction: BlockAccessor.batch_to_block costs ~5x more for large images
    return pa.table({"key": pa.array(batch["key"], pa.string()), "pos": batch["pos"],
                     "label": batch["label"], "image": ArrowTensorArray.from_numpy(batch["image"]),
                     "skip": pa.array(batch["skip"], pa.string())})


def ordered_map(fn: Callable[[int], pa.Table], num_items: int, num_cpus: float = 1.0) -> Iterator[pa.Table]:
    """Run fn(0) .. fn(num_items - 1) as parallel Ray Data tasks; yield their tables in item order.

    Used by `materialize`: one item per output shard. `fn` must catch its own errors and return
    them as rows, so that one bad input never fails the job with a remote traceback.
    """
    set_data_context()
    ds = ray.data.range(num_items, override_num_blocks=num_items)
    ds = ds.map_batches(partial(_apply_each, fn), batch_size=1, batch_format="numpy", num_cpus=num_cpus,
                        **_storage_args())
    try:
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=1)
    except ray.exceptions.RayError as err:  # a worker died (OOM, killed): one line, not a traceback
        raise DataError(f"a Ray task failed: {str(err).strip().splitlines()[-1]}") from None


def _apply_each(fn, batch: dict) -> pa.Table:
    return pa.concat_tables([fn(int(i)) for i in batch["id"]])
