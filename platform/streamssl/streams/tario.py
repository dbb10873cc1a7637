"""Tar byte ranges: split a self-contained run of tar members into samples, and write shards.

Stream shards are plain ustar with short names, so the hot path parses the 512-byte headers
directly (tarfile costs ~10x more per member); anything else (GNU long names, pax headers in
foreign source shards) goes through tarfile.
"""

from __future__ import annotations

import io
import tarfile

from streamssl import fsio
from streamssl.ingest.writer import tar_sample

_BLOCK = 512
_PLAIN = (b"0", b"\0")  # regular file typeflags


def split_samples(buf: bytes) -> list[tuple[str, dict[str, bytes]]]:
    """Group the members of a tar byte range into samples.

    Args:
        buf: whole tar members (headers, data, padding), e.g. `shard[offset:offset + nbytes]`.

    Returns:
        [(key, {suffix: data})] in tar order; key is the basename up to its first dot.

    Raises:
        ValueError: a truncated or malformed range, or a key that reappears after its run.
    """
    samples: list[tuple[str, dict[str, bytes]]] = []
    for name, data in _members(buf):
        base = name.rsplit("/", 1)[-1]
        if "." not in base:
            continue
        key, suffix = base.split(".", 1)
        if samples and samples[-1][0] == key:
            if suffix in samples[-1][1]:
                raise ValueError(f"duplicate member {name}")
            samples[-1][1][suffix] = data
        else:
            samples.append((key, {suffix: data}))
    if len({key for key, _ in samples}) != len(samples):
        raise ValueError("non-contiguous sample keys")
    return samples


def _members(buf: bytes):
    view, pos, end = memoryview(buf), 0, len(buf)
    while pos + _BLOCK <= end:
        header = bytes(view[pos:pos + _BLOCK])
        if header == b"\0" * _BLOCK:
            return
        if header[156:157] not in _PLAIN:
            yield from _members_tarfile(bytes(view[pos:]))
            return
        name = header[0:100].split(b"\0", 1)[0]
        prefix = header[345:500].split(b"\0", 1)[0] if header[257:262] == b"ustar" else b""
        size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        if pos + _BLOCK + size > end:
            raise ValueError("truncated member")
        full = (prefix + b"/" + name if prefix else name).decode("utf-8")
        yield full, bytes(view[pos + _BLOCK:pos + _BLOCK + size])
        pos += _BLOCK + (size + _BLOCK - 1) // _BLOCK * _BLOCK
    if pos != end:
        raise ValueError("truncated header")


def _members_tarfile(buf: bytes):
    try:
        with tarfile.open(fileobj=io.BytesIO(buf), mode="r:") as tar:
            for info in tar:
                if info.isfile():
                    yield info.name, tar.extractfile(info).read()
    except (tarfile.TarError, EOFError) as err:
        raise ValueError(f"bad tar data ({err})") from None


class ShardWriter:
    """Writes one reproducible ustar shard, recording each sample's byte range.

    Headers come from the ingest writer (fixed mtime/owner/mode, members sorted by suffix), so
    the same stream gives byte-identical shards.

    Args:
        path: output file; it appears there complete on `close()` (`streamssl.fsio.AtomicFile`).
    """

    def __init__(self, path: str):
        self._file = fsio.AtomicFile(path)
        self._offset = 0

    def write(self, key: str, members: dict[str, bytes]) -> tuple[int, int]:
        """Append one sample; returns its (offset, nbytes)."""
        data = tar_sample(key, members)
        self._file.write(data)
        self._offset += len(data)
        return self._offset - len(data), len(data)

    def close(self) -> None:
        self._file.write(b"\0" * 1024)  # end-of-archive marker
        self._file.commit()

    def abort(self) -> None:
        """Drop the shard: nothing appears at the output path."""
        self._file.discard()
