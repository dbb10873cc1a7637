"""Deterministic WebDataset shard writer that records where each sample lands.

Tars are written by hand (POSIX ustar headers, fixed mtime/owner/mode, members sorted by
extension) so the same input gives byte-identical shards, and so each sample's byte range
(`offset`, `nbytes`) is known while writing: the manifest can then point at samples without a
later scan.
"""

from __future__ import annotations

import json
from pathlib import Path

from streamssl import fsio

BLOCK = 512
DEFAULT_SHARD_SIZE = 10_000  # samples per shard
DEFAULT_SHARD_BYTES = 500 * 1024 * 1024  # a shard is closed once it passes this many bytes
SHARD_PATTERN = "shard-{:06d}.tar"
_MTIME = 0  # fixed, so reruns are byte-identical


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _header_template() -> tuple[bytes, bytes, int]:
    """The constant parts of a ustar header (around name and size) and their checksum share."""
    mid = _octal(0o444, 8) + _octal(0, 8) + _octal(0, 8)  # mode, uid, gid (100:124)
    tail = _octal(_MTIME, 12) + b" " * 8 + b"0" + b"\0" * 100 + b"ustar\x0000"  # 136:265
    tail += b"\0" * (BLOCK - 265)
    return mid, tail, sum(mid) + sum(tail)


_MID, _TAIL, _CONST_SUM = _header_template()


def tar_header(name: str, size: int) -> bytes:
    """One 512-byte ustar header for a regular file (mode 0444, owner 0, fixed mtime).

    Args:
        name: member name, at most 100 bytes of UTF-8.
        size: member size in bytes (< 8 GiB).

    Raises:
        ValueError: the name does not fit a ustar header.
    """
    raw = name.encode()
    if len(raw) > 100:
        raise ValueError(f"tar member name longer than 100 bytes: {name!r}")
    size_field = _octal(size, 12)
    # The checksum is the byte sum of the header with its own field read as 8 spaces (in _TAIL).
    checksum = b"%06o\0 " % (_CONST_SUM + sum(raw) + sum(size_field))
    return raw.ljust(100, b"\0") + _MID + size_field + _TAIL[:12] + checksum + _TAIL[20:]


def tar_sample(key: str, members: dict[str, bytes]) -> bytes:
    """The tar bytes of one sample: its members in sorted extension order, padded to blocks."""
    parts = []
    for ext in sorted(members):
        data = members[ext]
        parts += [tar_header(f"{key}.{ext}", len(data)), data, b"\0" * (-len(data) % BLOCK)]
    return b"".join(parts)


def encode_meta(meta: dict) -> bytes:
    """The `json` member: compact, key-sorted, so it is deterministic."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


class ShardWriter:
    """Writes samples into `out_dir/shard-NNNNNN.tar`, rolling over by count or bytes.

    Each shard is written to a temporary name and renamed when closed, so a crash never leaves a
    complete-looking shard behind.

    Args:
        out_dir: destination folder (must exist).
        max_count: samples per shard.
        max_bytes: a shard is closed as soon as it holds more than this many bytes.
        start: number of the first shard (a parallel task writing chunk i passes i).
    """

    def __init__(
        self,
        out_dir: str | Path,
        max_count: int = DEFAULT_SHARD_SIZE,
        max_bytes: int = DEFAULT_SHARD_BYTES,
        start: int = 0,
    ):
        self.out_dir, self.max_count, self.max_bytes = Path(out_dir), max_count, max_bytes
        self.number = start - 1
        self._file = None
        self._count = self._pos = 0

    def write(self, key: str, members: dict[str, bytes]) -> tuple[str, int, int]:
        """Append one sample; returns (shard file name, offset, nbytes) of its tar fragment."""
        if self._file is None or self._count >= self.max_count or self._pos >= self.max_bytes:
            self._open_next()
        data = tar_sample(key, members)
        offset = self._pos
        self._file.write(data)
        self._pos += len(data)
        self._count += 1
        return self.name, offset, len(data)

    @property
    def name(self) -> str:
        return SHARD_PATTERN.format(self.number)

    def _open_next(self) -> None:
        self.close()
        self.number += 1
        self._file = fsio.AtomicFile(fsio.join(self.out_dir, self.name))  # shard.tar.tmp until closed
        self._count = self._pos = 0

    def close(self) -> None:
        """Finish the current shard (end-of-archive blocks) and move it into place."""
        if self._file is None:
            return
        self._file.write(b"\0" * (2 * BLOCK))
        self._file.commit()
        self._file = None

    def __enter__(self) -> ShardWriter:
        return self

    def abort(self) -> None:
        """Drop the shard being written: a failed task leaves no complete-looking partial shard."""
        if self._file is None:
            return
        self._file.discard()
        self._file = None

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
