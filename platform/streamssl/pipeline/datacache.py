"""The run's data, cached by content: prepared datasets under STREAMSSL_DATA, streams inside them.

A prepared dataset's cache folder is named by its source, options and, for sources read from
files, a fingerprint of the input files (relative path, size, modification time): files added,
removed or changed give a new folder, prepared afresh. A stream's folder is named by its
arguments and the dataset's content hash (dataset.json `content_sha256`), so a dataset prepared
again into the same folder never reuses a stream built from the old data. STREAMSSL_DATA, the
dataset and the stream folders may be local paths or URIs (`s3://bucket/prefix`, see
`streamssl.fsio`); the input files a source is prepared from are read where they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from streamssl import fsio
from streamssl.config import RunConfig

log = logging.getLogger(__name__)

# where each path-based source reads when `dataset.path` is not given
_DEFAULT_PATHS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist"}


def data_root() -> str:
    return fsio.absolute(os.environ.get("STREAMSSL_DATA", "data"))


def digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def input_fingerprint(path: str | os.PathLike | None) -> str | None:
    """SHA-256 of the files under `path` (relative path, size, mtime in ns), or None without a path.

    A missing path gives None too: prepare names it in its own error.
    """
    if path is None or not Path(path).expanduser().exists():
        return None
    root = Path(path).expanduser().resolve()
    entries = [("", *_stat(root))] if root.is_file() else sorted(_walk(root, root))
    sha = hashlib.sha256()
    for rel, size, mtime in entries:
        sha.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return sha.hexdigest()


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _walk(root: Path, folder: Path):
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                yield from _walk(root, Path(entry.path))
            elif entry.is_file():
                st = entry.stat()
                yield os.path.relpath(entry.path, root), st.st_size, st.st_mtime_ns


def dataset_key(config: RunConfig) -> dict:
    """What the prepared dataset depends on: source, options and the input files' fingerprints."""
    ds = config.dataset
    path = ds.path or _DEFAULT_PATHS.get(ds.source)
    key = {"source": ds.source, "path": ds.path, "options": ds.options, "files": input_fingerprint(path)}
    if ds.source == "synthetic":
        from streamssl.ingest.synthetic import GENERATOR_VERSION

        key["generator"] = GENERATOR_VERSION
    if ds.options.get("test_path"):
        key["test_files"] = input_fingerprint(ds.options["test_path"])
    return key


def ensure_dataset(config: RunConfig) -> str:
    """The prepared dataset dir, preparing it on first use (cached by source, options and input files)."""
    from streamssl.errors import renamed
    from streamssl.ingest import prepare
    from streamssl.validation import check_dataset
    from streamssl.validation import dataset_key as key_of_prepare_name

    ds = config.dataset
    if ds.dir:
        out = fsio.absolute(ds.dir)
    else:
        out = fsio.join(data_root(), "datasets", f"{ds.source}-{digest(dataset_key(config))}")
    if not fsio.exists(fsio.join(out, "dataset.json")):
        log.info("preparing %s into %s", ds.source, out)
        with renamed(key_of_prepare_name):  # prepare names PATH and --flags; here they are pipeline keys
            prepare(ds.source, ds.path, out, strict=ds.strict, **ds.options)
    check_dataset(config, out)
    return out


def stream_args(config: RunConfig) -> dict:
    s = config.stream
    return {"kind": s.kind, "samples_per_class": s.samples_per_class, "blend_ratio": s.blend_ratio,
            "class_order": s.class_order, "label_column": s.label_column,
            "classes_per_segment": s.classes_per_segment, "order_by": s.order_by,
            "seed": config.seed if s.seed is None else s.seed}


def ensure_stream(config: RunConfig, dataset_dir: str) -> str:
    """The stream dir for this config and dataset content, built on first use (materialized, or
    only indexed under `stream.virtual`)."""
    from streamssl.errors import renamed
    from streamssl.ingest.columns import columns_sha256
    from streamssl.ingest.dataset import dataset_identity
    from streamssl.scoring import ensure_scored
    from streamssl.streams.build import build_stream
    from streamssl.validation import stream_key

    args = stream_args(config)
    key = {**args, "dataset_sha256": dataset_identity(dataset_dir)["sha256"]}
    # a curriculum column is scored on first use; its checksum keys the cache, so re-scoring rebuilds
    if args["order_by"]:
        key["score_sha256"] = ensure_scored(dataset_dir, args["order_by"])
        key["columns_sha256"] = columns_sha256(dataset_dir, args["order_by"])  # `streamssl columns` values
    if config.stream.virtual:  # only when set: materialized streams keep their cache folders
        key["virtual"] = True
    out = fsio.join(dataset_dir, "streams", f"{args['kind']}-{digest(key)}")
    if not fsio.exists(fsio.join(out, "stream.json")):
        log.info("%s the %s stream into %s", "indexing" if config.stream.virtual else "materializing",
                 args["kind"], out)
        with renamed(stream_key):  # the planner names its arguments; here they are stream.* keys
            build_stream(dataset_dir, out, **args, virtual=config.stream.virtual)
    return out
