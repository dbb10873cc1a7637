"""Bad samples met during a run: dropped from their stream batch or evaluation set, counted, named.

An image that does not decode (the stream reader marks it in its `skip` column, `load_images`
leaves it out) costs the run that sample, never the run: a warning names it when it happens, and
run.json lists every one in `skipped` ({shard, key, reason, where}: `stream`, `memory` or `test`)
beside `sample_counts` ({where: {in, used, skipped}}, in = used + skipped). Under
`dataset.strict` the first one stops the run with a one-line DataError naming shard and key.

A stream batch keeps its boundaries (the reader never drops rows) and only then loses its bad
rows, so every DDP rank still consumes the same stream batches and makes the same K updates;
the learner takes batches shorter than B, and empty ones (see `Learner.observe`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from streamssl import fsio
from streamssl.errors import DataError

log = logging.getLogger("streamssl.skips")

_COLUMNS = ("key", "pos", "label", "image")
MAX_LISTED = 20  # in the end-of-run warning; run.json lists them all


class StreamSkips:
    """Drops the undecodable rows of stream batches, recording each in `records`.

    Args:
        records: where to append {shard, key, reason, where, pos} (the loop state's `skipped`,
            so a checkpoint keeps them); `shard` is the stream shard until `resolve_shards`.
        stream_dir: the stream read (names the stream shard of a position).
        dataset_dir: the dataset the stream was built from (names a sample's source shard).
        strict: stop at the first bad sample instead.
    """

    def __init__(self, records: list, stream_dir: Path, dataset_dir: Path, strict: bool) -> None:
        from streamssl.streams import stream_info

        self.records, self.dataset_dir, self.strict = records, str(dataset_dir), strict
        self.shard_size = int(stream_info(str(stream_dir)).get("shard_size") or 0)

    def filter(self, batches: Iterable[dict]) -> Iterator[dict]:
        """The batches without their bad rows; each carries `rows`, its length before dropping."""
        for batch in batches:
            reasons = batch.get("skip")
            rows = len(batch["label"])
            bad = np.zeros(rows, bool) if reasons is None else np.array([bool(r) for r in reasons])
            if not bad.any():
                yield {**{name: batch[name] for name in _COLUMNS}, "rows": rows}
                continue
            self._record(batch, np.flatnonzero(bad))
            yield {**_kept(batch, ~bad), "rows": rows}

    def _record(self, batch: dict, bad: np.ndarray) -> None:
        new = [{"shard": self._stream_shard(int(batch["pos"][i])), "key": str(batch["key"][i]),
                "reason": str(batch["skip"][i]), "where": "stream", "pos": int(batch["pos"][i])} for i in bad]
        if self.strict:
            first = resolve_shards(new[:1], self.dataset_dir)[0]
            raise DataError(f"{first['shard']}, key {first['key']} (stream position {first['pos']}): "
                            f"{first['reason']} (dataset.strict)")
        for r in new:
            log.warning("skipped stream sample %s key %s (position %d): %s", r["shard"], r["key"], r["pos"],
                        r["reason"])
        self.records += new

    def _stream_shard(self, pos: int) -> str:
        from streamssl.streams.materialize import SHARD_PATTERN

        return SHARD_PATTERN.format(pos // self.shard_size) if self.shard_size else "stream"


def _kept(batch: dict, keep: np.ndarray) -> dict:
    out = {name: batch[name][keep] for name in _COLUMNS}
    images = out["image"]
    if images.dtype == object:  # ragged only because of a placeholder: restack what is left
        shapes = {im.shape for im in images}
        if len(shapes) == 1:
            out["image"] = np.stack(list(images))
        elif not shapes:
            out["image"] = np.zeros((0, 1, 1, 3), np.uint8)
    return out


def resolve_shards(records: list[dict], dataset_dir: Path) -> list[dict]:
    """Stream records with `shard` set to the sample's source shard in the dataset (and
    `stream_shard` keeping the stream's), found by key in one filtered manifest read."""
    stream = [r for r in records if r.get("where") == "stream" and "stream_shard" not in r]
    if not stream:
        return records
    keys = sorted({r["key"] for r in stream})
    table = fsio.read_table(fsio.join(dataset_dir, "manifest.parquet"), columns=["key", "shard"],
                            filters=[("key", "in", keys)])
    source = dict(zip(table["key"].to_pylist(), table["shard"].to_pylist()))
    for r in stream:
        r["stream_shard"], r["shard"] = r["shard"], source.get(r["key"], r["shard"])
    return records


def gather_records(records: list[dict]) -> list[dict]:
    """Every rank's records, in rank order (a collective: every rank must call it, at the end)."""
    from streamssl import distributed

    if distributed.world_size() == 1:
        return list(records)
    import torch

    data = torch.frombuffer(bytearray(json.dumps(records).encode()), dtype=torch.uint8)
    gathered, counts = distributed.all_gather_varlen(data)
    parts = torch.split(gathered.cpu(), counts)
    return [r for part in parts for r in json.loads(bytes(part.tolist()).decode())]


def load_eval_set(where: str, folder: Path, rows, *, size: int | None, label_column: str,
                  strict: bool) -> tuple[np.ndarray, np.ndarray, list[str], tuple[list[dict], dict]]:
    """Decode an evaluation set's manifest rows (`where`: memory, val, test), leaving undecodable images out.

    Returns:
        (images, labels, keys of the images kept, (records {shard, key, reason, where}, {in, used, skipped})).

    Raises:
        DataError: under `strict`, the first image that does not decode (names shard and key).
    """
    from streamssl.ingest.reader import load_rows

    bad: list[dict] | None = None if strict else []
    images, labels = load_rows(folder, rows, size=size, label_column=label_column, skipped=bad)
    records = [{**r, "where": where} for r in bad or []]
    for r in records:
        log.warning("skipped %s image %s key %s: %s", where, r["shard"], r["key"], r["reason"])
    dropped = {str(r["key"]) for r in records}
    keys = [k for k in rows["key"].astype(str).tolist() if k not in dropped]
    return images, labels, keys, (records, {"in": len(images) + len(records), "used": len(images),
                                            "skipped": len(records)})


def run_skips(stream_records: list[dict], eval_data, samples_seen: int, dataset_dir: Path, rank: int) -> dict:
    """run.json's `skipped` and `sample_counts` (every rank calls this; rank 0's result is used)."""
    stream = sorted(gather_records(stream_records), key=lambda r: r["pos"])
    if rank == 0:
        resolve_shards(stream, dataset_dir)
    counts = {"stream": {"in": samples_seen, "used": samples_seen - len(stream), "skipped": len(stream)}}
    counts.update(getattr(eval_data, "counts", None) or {})
    return {"skipped": stream + list(getattr(eval_data, "skipped", None) or []), "sample_counts": counts}


def warn_run_skips(records: list[dict]) -> None:
    """One warning at the end of a run naming every skipped sample (up to MAX_LISTED)."""
    if not records:
        return
    lines = [f"  {r['where']}: {r['shard']} {r['key']}: {r['reason']}" for r in records[:MAX_LISTED]]
    if len(records) > MAX_LISTED:
        lines.append(f"  ... and {len(records) - MAX_LISTED} more (all in run.json 'skipped')")
    log.warning("skipped %d image(s) that do not decode (where: shard key: reason):\n%s", len(records),
                "\n".join(lines))
