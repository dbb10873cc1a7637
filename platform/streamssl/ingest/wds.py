"""Indexing existing WebDataset shards in place (e.g. timm's `imagenet22k-train-0000.tar`).

Only tar headers, `cls` members and (unless --no-verify) images are read, each image decoded in
full once so that one that does not decode is a skip here rather than a failure in a run; images
are never rewritten, so the manifest's `shard` paths point into the input folder (`shard_root`).
One task per shard, on Ray Data when there are 2+. Damage is contained to what it touches: a
truncated or corrupt tar keeps every complete sample before the damage.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

from PIL import Image

from streamssl import fsio
from streamssl.errors import ConfigError
from streamssl.ingest.dataset import TASK_COLUMNS, collect_rows, write_dataset
from streamssl.ingest.parallel import run_tasks, want_ray
from streamssl.ingest.prepare_options import PrepareOptions
from streamssl.ingest.reader import split_name
from streamssl.ingest.stats import decoded_stats

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def natural_key(name: str) -> list:
    """Sort `x-9.tar` before `x-10.tar` even without zero padding."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_shards(folder: Path, arg: str = "PATH") -> list[Path]:
    """The `*.tar` files of a folder in natural order; anything else (`_info.json`) is ignored."""
    if not folder.is_dir():
        raise ConfigError(f"{arg}: {folder} is not a folder")
    shards = sorted((p for p in folder.glob("*.tar") if p.is_file()), key=lambda p: natural_key(p.name))
    if not shards:
        raise ConfigError(f"{arg}: no *.tar shards in {folder}")
    return shards


def scan_members(tf: tarfile.TarFile, file_size: int) -> tuple[list[tarfile.TarInfo], str | None, str | None]:
    """Regular-file members before the first damage, what the damage is, and the key it cut into.

    Returns:
        (members, damage or None, key of a sample whose member data is cut off, or None)
    """
    members = []
    try:
        for m in tf:
            if m.isfile() and m.offset_data + m.size > file_size:
                return members, f"truncated at byte {file_size}", split_name(m.name)[0]
            if m.isfile():
                members.append(m)
    except (tarfile.TarError, OSError, EOFError) as err:
        return members, f"corrupt tar at byte {tf.offset}: {err}", None
    # tarfile stops silently at a bad or missing header; only two zero blocks mark a clean end.
    tf.fileobj.seek(tf.offset)
    tail = tf.fileobj.read(512)
    if len(tail) < 512:
        return members, f"truncated at byte {tf.offset} (no end-of-archive marker)", None
    if tail.strip(b"\0"):
        return members, f"corrupt tar header at byte {tf.offset}", None
    return members, None, None


def group_members(members: list[tarfile.TarInfo]) -> list[tuple[str, list[tarfile.TarInfo]]]:
    """Consecutive members sharing a key, in tar order."""
    groups: list[tuple[str, list]] = []
    for m in members:
        key, _ = split_name(m.name)
        if groups and groups[-1][0] == key:
            groups[-1][1].append(m)
        else:
            groups.append((key, [m]))
    return groups


def check_sample(tf: tarfile.TarFile, members: list[tarfile.TarInfo], verify: bool) -> dict:
    """Label, image member and size of one sample; raises ValueError saying what is wrong."""
    by_ext = {split_name(m.name)[1]: m for m in members}
    image_ext = next((e for e in IMAGE_EXTS if e in by_ext), None)
    if image_ext is None:
        raise ValueError(f"no image member (has {sorted(by_ext)})")
    if "cls" not in by_ext:
        raise ValueError("no cls member")
    text = tf.extractfile(by_ext["cls"]).read().strip()
    if not text.isdigit():
        raise ValueError(f"cls is not a non-negative integer: {text[:20]!r}")
    width = height = -1  # unknown without --verify
    if verify:
        width, height = _decoded_size(tf.extractfile(by_ext[image_ext]).read(), image_ext)
    return {
        "label": int(text),
        "ext": image_ext,
        "size": by_ext[image_ext].size,
        "width": width,
        "height": height,
    }


def _decoded_size(data: bytes, ext: str) -> tuple[int, int]:
    """(width, height) of an image that decodes in full; ValueError saying why it does not."""
    try:
        img = Image.open(io.BytesIO(data))
    except Exception as err:
        raise ValueError(f"{ext} member does not open as an image ({type(err).__name__})") from None
    with img:
        size = img.size  # before draft, which shrinks it
        img.draft(img.mode, (1, 1))  # JPEG: the smallest DCT scale still reads every coefficient
        try:
            img.load()  # the whole body: a truncated or corrupt one fails here, not in a run
        except Exception as err:
            raise ValueError(f"{ext} member does not decode ({type(err).__name__}: {err})") from None
    return size


def _sample_row(tf: tarfile.TarFile, key: str, members: list, seen: set, spec: dict) -> dict:
    if key in seen:
        return {"key": key, "reason": "key repeats non-contiguously in this shard"}
    seen.add(key)
    try:
        sample = check_sample(tf, members, spec["verify"])
    except ValueError as err:
        return {"key": key, "reason": str(err)}
    last = members[-1]
    end = last.offset_data + last.size + (-last.size % 512)
    return {
        "key": key,
        "offset": members[0].offset,
        "nbytes": end - members[0].offset,
        "reason": "",
        **sample,
    }


def index_shard(spec: dict) -> dict[str, list]:
    """Task: index one tar (`spec['path']`); returns TASK_COLUMNS lists (samples and skips)."""
    cols: dict[str, list] = {name: [] for name in TASK_COLUMNS}

    def add(row: dict) -> None:
        for name in TASK_COLUMNS:
            cols[name].append(row.get(name, spec["name"] if name == "shard" else None))

    try:
        tf = tarfile.open(spec["path"], "r:")
    except (tarfile.TarError, OSError) as err:
        add({"reason": f"not a readable tar: {err}"})
        return cols
    with tf:
        members, damage, cut_key = scan_members(tf, os.path.getsize(spec["path"]))
        groups, seen = group_members(members), set()
        if cut_key is not None and (not groups or groups[-1][0] != cut_key):
            groups.append((cut_key, []))  # the damaged sample's first member was the one cut
        for i, (key, group) in enumerate(groups):
            cut = cut_key is not None and i == len(groups) - 1
            add(
                {"key": key, "reason": f"sample cut off: {damage}"}
                if cut
                else _sample_row(tf, key, group, seen, spec)
            )
        if damage and cut_key is None:
            add({"reason": damage})
    return cols


def index_split(folder: Path, out: Path, opts: PrepareOptions, arg: str) -> tuple:
    """Index every shard of one folder; returns (rows, skipped)."""
    shards = list_shards(folder, arg)
    specs = [{"name": p.name, "path": str(p), "verify": opts.verify} for p in shards]
    parallel = want_ray(opts.parallel, len(specs), sum(p.stat().st_size for p in shards))
    frames = run_tasks(
        index_shard,
        specs,
        TASK_COLUMNS,
        parallel=parallel,
        desc=f"index {folder.name}",
        unit="shard",
        bar_disable=opts.bar_disable,
    )
    return collect_rows(frames, opts.strict)


def _write(
    folder: Path, out: Path, rows, skipped, names: list[str], opts: PrepareOptions, extra: dict
) -> dict:
    fsio.makedirs(out)
    mean, std = decoded_stats(folder, rows) if opts.verify and len(rows) else (None, None)
    return write_dataset(
        out,
        rows,
        label_names={"label": names},
        source=opts.source,
        skipped=skipped,
        shard_root=str(folder.resolve()),
        mean=mean,
        std=std,
        extra=extra,
    )


def prepare_source(path: Path | None, out: Path, opts: PrepareOptions) -> dict:
    """Manifest + dataset.json for PATH's shards in `out` (and `--test-path`'s in `out/test`).

    Label names are the ids as strings; the class count is the largest label + 1 over both splits.
    """
    if path is None:
        raise ConfigError("PATH: wds needs the folder holding the *.tar shards")
    splits = {"train": (path, out, *index_split(path, out, opts, "PATH"))}
    if opts.test_path is not None:
        splits["test"] = (
            opts.test_path,
            out / "test",
            *index_split(opts.test_path, out / "test", opts, "--test-path"),
        )
    num_classes = 1 + max((int(r.label.max()) for _, _, r, _ in splits.values() if len(r)), default=-1)
    names = [str(i) for i in range(num_classes)]
    if "test" in splits:
        _write(*splits["test"], names, opts, extra={"split": "test"})
    return _write(
        *splits["train"], names, opts, extra={"split": "train", "test": "test" if "test" in splits else None}
    )
