"""Virtual (zero-copy) streams: the plan points into the dataset's own shards; no image is copied.

A virtual stream folder holds only `index.parquet` and `stream.json` (`"virtual": true`). Its
index rows are the stream's rows in stream order, and each names the source shard (`shard`, an
absolute path or URI), the sample's byte range there (`offset`, `nbytes`, as in the dataset's
manifest) and its image member (`ext`). A read task takes a run of stream positions, sorts their
ranges by (shard, offset), coalesces neighbours (reading small gaps through rather than seeking),
reads each coalesced range once and hands the samples back in stream order. Rows, rank split and
decoded pixels are those of the materialized stream of the same plan (the same bytes go through the
same decoder); only a sample whose bytes are unusable differs: materializing drops it from the
index, a virtual read keeps its row with a `skip` reason (the consumer drops and records it).

Materialize instead when random access is slow or costly (object storage with high per-request
latency, network disks, tape-like archives, a stream read many times): a materialized stream is
a sequential scan, a virtual one a range read per coalesced run.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamssl import fsio
from streamssl.streams.decode import IMAGE_EXTS, decode_batch
from streamssl.streams.split import RankSplit, task_groups
from streamssl.streams.tario import split_samples

RANGE_FETCHERS = 8  # ranged GETs in flight per read task on object storage
MAX_GAP_BYTES = 256 << 10  # bytes of other samples between two wanted ones: read through, don't seek
_IDENTIFIERS = ("key", "shard", "offset", "nbytes", "ext")


def is_virtual(info: dict) -> bool:
    """Whether a stream.json describes a virtual stream."""
    return bool(info.get("virtual"))


def index_source(manifest_path: str, label_column: str) -> tuple[pa.Table, list[str]]:
    """The manifest columns a virtual index takes its rows from, and the integer `*_label` columns
    it carries besides the stream's label. Read with Arrow, not pandas: at ImageNet-21K size (13M
    keys) Python strings would cost seconds and gigabytes."""
    schema = fsio.parquet_file(manifest_path).schema_arrow
    extra = [f.name for f in schema if f.name.endswith("_label") and f.name not in ("label", "dataset_label")
             and pa.types.is_integer(f.type)]
    wanted = list(dict.fromkeys([*_IDENTIFIERS, "label", label_column, *extra]))
    table = fsio.read_table(manifest_path, columns=wanted, read_dictionary=["shard", "ext"])
    return table.unify_dictionaries().combine_chunks(), extra


def virtual_index_parts(source: tuple[pa.Table, list[str]], plan: np.ndarray, root: str, label_column: str,
                        part_rows: int) -> Iterator[pa.Table]:
    """The index of a virtual stream, `part_rows` rows at a time: the plan's manifest rows
    (`index_source`) in stream order. Parts let the caller write one while the next is gathered.

    Columns: pos, key, label (the stream's label), dataset_label, the manifest's other integer
    `*_label` columns, shard (absolute source shard), offset, nbytes, ext.
    """
    table, extra = source
    shard = table["shard"].chunk(0) if table.num_rows else pa.array([], pa.dictionary(pa.int32(), pa.string()))
    names = pa.array([fsio.join(root, name) for name in shard.dictionary.to_pylist()], pa.string())
    for start in range(0, len(plan), part_rows):
        part = table.take(pa.array(plan[start:start + part_rows]))
        yield pa.table({
            "pos": pa.array(np.arange(start, start + part.num_rows, dtype=np.int64)),
            "key": part["key"],
            "label": part[label_column].cast(pa.int64()),
            "dataset_label": part["label"].cast(pa.int64()),
            **{c: part[c].cast(pa.int64()) for c in extra if c != label_column},
            "shard": pa.DictionaryArray.from_arrays(part["shard"].combine_chunks().indices, names),
            "offset": part["offset"].cast(pa.int64()),
            "nbytes": part["nbytes"].cast(pa.int64()),
            "ext": part["ext"],
        })


@dataclass(frozen=True)
class VirtualChunk:
    """One read task of a virtual stream: the rank's rows among index rows [lo, hi).

    The task reads those index rows itself (a row group or two): a stream's read tasks are all
    serialized into the object store before the first one runs, so each carries a few integers
    rather than its rows' byte ranges. A grouped task (`cuts`: the index rows where its later
    chunks start) reads its index rows once and yields one block per chunk.
    """

    stream_dir: str
    lo: int
    hi: int
    split: RankSplit
    num_rows: int
    num_bytes: int
    cuts: tuple[int, ...] = ()

    @property
    def paths(self) -> list[str]:
        return []  # known only once the task reads its index rows

    def blocks(self, size: tuple[int, int] | None) -> Iterator[dict[str, np.ndarray]]:
        """Each chunk's rows decoded (`decode_batch`'s batch), chunks and rows in stream order."""
        wanted = self.split.rows_between(self.lo, self.hi)
        rows = _index_rows(self.stream_dir, self.lo, self.hi, wanted)
        bounds = [0, *np.searchsorted(wanted, self.cuts).tolist(), len(wanted)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            yield self._decode({k: v if k == "paths" else v[a:b] for k, v in rows.items()}, size)

    def _decode(self, rows: dict, size: tuple[int, int] | None) -> dict[str, np.ndarray]:
        ranges, which = coalesce(rows["shard"], rows["offset"], rows["nbytes"])
        buffers = _read_all(rows["paths"], ranges)
        keys, members, reasons = [], [], []
        for i in range(len(rows["pos"])):
            key, sample, reason = _sample(rows, i, ranges[which[i]], buffers[which[i]])
            keys.append(key)
            members.append(sample)
            reasons.append(reason)
        if any(reasons):
            keys = _fill_keys(self.stream_dir, rows["pos"], keys)
        return decode_batch(members, keys, rows["label"], rows["pos"], size, reasons=reasons)


def _index_rows(stream_dir: str, lo: int, hi: int, wanted: np.ndarray) -> dict:
    """Index rows `wanted` (within [lo, hi)) as arrays: pos, label, shard (codes into paths),
    offset, nbytes, ext (names); read from the row groups that hold [lo, hi) only."""
    index = fsio.parquet_file(fsio.join(stream_dir, "index.parquet"))
    sizes = [index.metadata.row_group(g).num_rows for g in range(index.metadata.num_row_groups)]
    first = np.r_[0, np.cumsum(sizes)]
    groups = list(range(int(np.searchsorted(first, lo, "right")) - 1, int(np.searchsorted(first, hi, "left"))))
    table = index.read_row_groups(groups, columns=["pos", "label", "shard", "offset", "nbytes", "ext"])
    table = table.slice(lo - int(first[groups[0]]), hi - lo).take(pa.array(wanted - lo)).unify_dictionaries()
    shard = table["shard"].combine_chunks()
    shard = shard if pa.types.is_dictionary(shard.type) else shard.dictionary_encode()
    return {"pos": table["pos"].to_numpy(), "label": table["label"].to_numpy(),
            "shard": shard.indices.to_numpy(), "paths": shard.dictionary.to_pylist(),
            "offset": table["offset"].to_numpy(), "nbytes": table["nbytes"].to_numpy(),
            "ext": table["ext"].cast(pa.string()).to_pylist()}


def _sample(rows: dict, i: int, span: list, buf: bytes | str) -> tuple[str, dict | None, str]:
    """(key, {ext: image bytes}, "") or ("", None, why not) for sample i of `_index_rows`."""
    offset, nbytes = int(rows["offset"][i]), int(rows["nbytes"][i])
    where = f"{rows['paths'][span[0]]} at byte {offset}"
    if isinstance(buf, str):
        return "", None, f"{where}: {buf}"
    data = memoryview(buf)[offset - span[1]:offset - span[1] + nbytes]
    try:
        if len(data) != nbytes:
            raise ValueError(f"truncated: {len(data)} of {nbytes} bytes")
        return (*_image_member(split_samples(data), rows["ext"][i]), "")
    except ValueError as err:
        return "", None, f"{where}: {err}"


def _image_member(samples: list[tuple[str, dict[str, bytes]]], ext: str) -> tuple[str, dict[str, bytes]]:
    """The sample's key and its image member, chosen as `materialize` chooses it."""
    if len(samples) != 1:
        raise ValueError(f"{len(samples)} samples at the manifest's offset (manifest out of date?)")
    key, members = samples[0]
    ext = ext if ext in members else next((e for e in IMAGE_EXTS if e in members), None)
    if ext is None:
        raise ValueError("no image member")
    return key, {ext: members[ext]}


def coalesce(shard: np.ndarray, offset: np.ndarray, nbytes: np.ndarray,
             max_gap: int = MAX_GAP_BYTES) -> tuple[list[list[int]], np.ndarray]:
    """Merge the samples' byte ranges into few reads.

    Returns:
        ([shard, start, stop] per read, sorted by shard and offset), and (B,) the read holding
        each sample. Overlapping or repeated samples share a read.
    """
    ranges: list[list[int]] = []
    which = np.empty(len(offset), np.int64)
    for i in np.lexsort((offset, shard)):
        s, start, stop = int(shard[i]), int(offset[i]), int(offset[i] + nbytes[i])
        if ranges and ranges[-1][0] == s and start - ranges[-1][2] <= max_gap:
            ranges[-1][2] = max(ranges[-1][2], stop)
        else:
            ranges.append([s, start, stop])
        which[i] = len(ranges) - 1
    return ranges, which


def _read_all(paths: list[str], ranges: list[list[int]]) -> list[bytes | str]:
    """`_read_range` of every [shard, start, stop]; from an object store several at once, since each
    ranged GET waits a round trip (local files: in order, the page cache answers at once)."""
    if len(ranges) < 2 or not any(fsio.is_uri(paths[s]) for s, _, _ in ranges):
        return [_read_range(paths[s], start, stop) for s, start, stop in ranges]
    with ThreadPoolExecutor(min(RANGE_FETCHERS, len(ranges))) as pool:
        return list(pool.map(lambda r: _read_range(paths[r[0]], r[1], r[2]), ranges))


def _read_range(path: str, start: int, stop: int) -> bytes | str:
    """The bytes, or why they could not be read (a missing shard fails its samples, not the run)."""
    try:
        with fsio.open_input(path) as f:
            f.seek(start)
            return f.read(stop - start)
    except OSError as err:
        return f"unreadable ({type(err).__name__}: {err})"


def _fill_keys(stream_dir: str, positions: np.ndarray, keys: list[str]) -> list[str]:
    """Keys of the samples whose bytes failed, from the index (rare: one filtered read)."""
    missing = [int(p) for p, k in zip(positions, keys) if not k]
    table = fsio.read_table(fsio.join(stream_dir, "index.parquet"), columns=["pos", "key"],
                            filters=[("pos", "in", missing)])
    found = dict(zip(table["pos"].to_pylist(), table["key"].to_pylist()))
    return [k or found.get(int(p), "") for p, k in zip(positions, keys)]


def virtual_chunks(stream_dir: str, split: RankSplit, chunk_bytes: int, max_tasks: int,
                   info: dict | None = None) -> list[VirtualChunk]:
    """A rank's read tasks: chunks of about `chunk_bytes` source bytes, a whole number of
    `split.block` rows each, one chunk per task, or grouped (`split.task_groups`) when there are
    more than `max_tasks` chunks.

    Chunks are sized by the stream's mean sample size (its stream.json `info`'s `source_bytes`;
    read from the index for streams written before that key, or without `info`), not by each
    sample's: cutting 13M rows by their own sizes means reading and summing 13M integers before
    the first task can start, and a chunk's size is only a target.
    """
    n = split.num_samples
    if n == 0:
        return []
    mean = _mean_nbytes(stream_dir, info or {})
    per_chunk = max(1, round(chunk_bytes / max(mean, 1.0) / split.block)) * split.block
    starts = np.arange(0, n, per_chunk, dtype=np.int64)  # each chunk's first rank row
    bounds = np.r_[starts[task_groups(len(starts), max_tasks)[:-1]], n]
    lo, hi = split.row_of(bounds[:-1]), split.row_of(bounds[1:] - 1) + 1
    return [VirtualChunk(stream_dir, int(a), int(b), split, int(size), int(size * mean),
                         tuple(split.row_of(starts[(starts > first) & (starts < last)]).tolist()))
            for a, b, size, first, last in zip(lo, hi, np.diff(bounds), bounds[:-1], bounds[1:])]


def _mean_nbytes(stream_dir: str, info: dict) -> float:
    """Mean encoded bytes per sample: stream.json's `source_bytes` / `num_samples`, else the index's."""
    if info.get("source_bytes") and info.get("num_samples"):
        return info["source_bytes"] / int(info["num_samples"])
    nbytes = fsio.read_table(fsio.join(stream_dir, "index.parquet"), columns=["nbytes"])["nbytes"]
    return float(pc.mean(nbytes).as_py() or 1.0)
