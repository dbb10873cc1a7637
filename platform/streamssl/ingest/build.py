"""`prepare`: any source -> WebDataset shards + manifest.parquet + dataset.json (docs/formats.md)."""

from __future__ import annotations

from pathlib import Path

from streamssl import fsio
from streamssl.errors import ConfigError
from streamssl.ingest import cifar, fashion_mnist, imagefolder, synthetic, wds
from streamssl.ingest.dataset import warn_skipped
from streamssl.ingest.holdout import finish_test_split, parse_test_fraction
from streamssl.ingest.prepare_options import PrepareOptions
from streamssl.ingest.reader import load_dataset_info
from streamssl.ingest.staging import staged
from streamssl.ingest.writer import DEFAULT_SHARD_BYTES, DEFAULT_SHARD_SIZE

SOURCES = {
    "fashion-mnist": fashion_mnist.prepare_source,
    "cifar10": cifar.prepare_cifar10,
    "cifar100": cifar.prepare_cifar100,
    "imagefolder": imagefolder.prepare_source,
    "wds": wds.prepare_source,
    "synthetic": synthetic.prepare_source,
}
_SOURCE_OPTIONS = {"synthetic": set(synthetic.DEFAULTS)}  # options only some sources take
_TEST_PATH_SOURCES = {"imagefolder", "wds"}  # the others bring their own test split


def check_options(source: str, options: dict, test_path, test_fraction=None) -> None:
    """ConfigError for a source option, --test-path or --test-fraction that `source` does not take."""
    for name in options:
        if name not in _SOURCE_OPTIONS.get(source, ()):
            takers = [s for s, names in _SOURCE_OPTIONS.items() if name in names] or ["no source"]
            raise ConfigError(
                f"--{name.replace('_', '-')}: not an option of {source} (taken by: {', '.join(takers)})"
            )
    if test_path is not None and source not in _TEST_PATH_SOURCES:
        raise ConfigError(
            f"--test-path: {source} brings its own test split "
            f"(--test-path is for {', '.join(sorted(_TEST_PATH_SOURCES))})"
        )
    if test_fraction is not None and (source not in _TEST_PATH_SOURCES or test_path is not None):
        why = "--test-path gives the test split" if test_path is not None else f"{source} brings its own test split"
        raise ConfigError(f"--test-fraction: {why} (nothing is held out)")


def _input_path(path, arg: str) -> Path | None:
    if path is None:
        return None
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"{arg}: {path} does not exist")
    return path.resolve()


def prepare(
    source: str,
    path: str | Path | None,
    out: str | Path,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    strict: bool = False,
    verify: bool = True,
    test_path: str | Path | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    parallel: bool | None = None,
    progress: bool | None = None,
    test_fraction: float | str | None = None,
    **source_options,
) -> dict:
    """Prepare a dataset folder from a source; returns the train split's dataset.json dict.

    Args:
        source: one of SOURCES ("fashion-mnist", "cifar10", "cifar100", "imagefolder", "wds",
            "synthetic").
        path: the source's input (folder); None for synthetic and the Debian Fashion-MNIST.
        out: output folder; the test split (when there is one) goes to `out/test`. The dataset is
            built in a folder beside it and moved in once complete (`ingest.staging`).
        shard_size: samples per shard (shards also close past ~500 MB, `shard_bytes`).
        strict: stop at the first bad sample with DataError instead of skipping it.
        verify: wds only: check each image member decodes (in full).
        test_path: imagefolder/wds: a second folder holding the test split.
        parallel: per-file work on Ray Data; None decides by task count (2+ tasks).
        progress: progress bars; None shows them on a terminal only.
        test_fraction: imagefolder/wds without `test_path`: the class-stratified fraction of the
            samples held out as the test split (None: 1/6; see `streamssl.ingest.holdout`).
        **source_options: synthetic: classes, samples_per_class, size, seed.

    Raises:
        ConfigError: unknown source, bad option, missing or empty input (names the argument).
        DataError: bad data under `strict`, or an unreadable source file.
    """
    if source not in SOURCES:
        raise ConfigError(f"SOURCE: unknown source {source!r} (choose from {', '.join(SOURCES)})")
    source_options = {k: v for k, v in source_options.items() if v is not None}
    check_options(source, source_options, test_path, test_fraction)
    fraction = None if test_fraction is None else parse_test_fraction(test_fraction)
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ConfigError(f"--shard-size: must be an integer >= 1, got {shard_size!r}")
    opts = PrepareOptions(
        source,
        shard_size,
        shard_bytes,
        strict,
        verify,
        _input_path(test_path, "--test-path"),
        parallel,
        progress,
    )
    in_path = _input_path(path, "PATH")
    out = out if fsio.is_uri(out) else Path(out).expanduser().resolve()
    with staged(out, source) as folder:  # a failed or interrupted prepare leaves `out` as it was
        info = finish_test_split(folder, SOURCES[source](in_path, folder, opts, **source_options), fraction)
    test_skipped = load_dataset_info(fsio.join(out, "test"))["skipped"] if info.get("test") else []
    warn_skipped(info["skipped"] + test_skipped)
    return info
