"""The checks of `prepare`'s options and inputs that a pipeline or the `prepare` command runs
before any work (what a source receives is `streamssl.ingest.prepare_options.PrepareOptions`)."""

from __future__ import annotations

from pathlib import Path

from streamssl.errors import ConfigError
from streamssl.ingest import build, cifar, fashion_mnist, synthetic, wds

# prepare()'s keyword arguments, which a pipeline may also set in dataset.options: name -> type
PREPARE_KEYWORDS = {"shard_size": int, "shard_bytes": int, "strict": bool, "verify": bool, "test_path": str,
                    "parallel": bool, "progress": bool}
# sources that need an input folder, and what it holds
_INPUTS = {
    "cifar10": "the folder of its python-pickle batches",
    "cifar100": "the folder of its python-pickle batches",
    "imagefolder": "a folder with one sub-folder per class",
    "wds": "the folder holding the *.tar shards",
}


def check_source_options(source: str, options: dict) -> None:
    """Raise now what `prepare(source, PATH, OUT, **options)` would reject before writing anything.

    Messages name an option as the `prepare` command's flag (`--classes`), as `prepare` does; a
    pipeline maps it to `dataset.options.classes` (`validation.dataset_key`).
    """
    for name, kind in PREPARE_KEYWORDS.items():
        value = options.get(name)
        flag = "--" + name.replace("_", "-")
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise ConfigError(f"{flag}: expected {kind.__name__}, got {value!r}")
        if kind is int and value is not None and value < 1:
            raise ConfigError(f"{flag}: must be an integer >= 1, got {value!r}")
    own = {k: v for k, v in options.items() if k not in PREPARE_KEYWORDS and v is not None}
    build.check_options(source, own, options.get("test_path"))  # the checks `prepare` runs first
    if source == "synthetic":
        synthetic.parse_options(own)


def check_source_input(source: str, path: str | Path | None, test_path: str | Path | None = None) -> None:
    """Fail in seconds on an input `prepare` could not read: a missing or wrong PATH or --test-path."""
    if source == "synthetic":
        if path is not None:
            raise ConfigError(f"PATH: the synthetic source takes no input path (got {path})")
        return
    if path is None and source == "fashion-mnist":
        if not fashion_mnist.DEFAULT_PATH.is_dir():
            raise ConfigError(f"PATH: not given, and {fashion_mnist.DEFAULT_PATH} is not a folder "
                              "(install Debian's dataset-fashion-mnist, or give the folder of its idx files)")
        return
    if path is None:
        raise ConfigError(f"PATH: {source} needs {_INPUTS[source]}")
    folders = [(arg, Path(f).expanduser()) for arg, f in (("PATH", path), ("--test-path", test_path)) if f is not None]
    for arg, folder in folders:
        if not folder.exists():
            raise ConfigError(f"{arg}: {folder} does not exist")
        if not folder.is_dir():
            raise ConfigError(f"{arg}: {folder} is not a folder ({source} needs {_INPUTS.get(source, 'a folder')})")
    for arg, folder in folders:  # what the folders hold, once both exist
        if source == "wds":
            wds.list_shards(folder, arg)
        if source == "imagefolder" and not any(p.is_dir() for p in folder.iterdir()):
            raise ConfigError(f"{arg}: {folder} holds no class sub-folders")
    if source in ("cifar10", "cifar100"):
        cifar.check_layout(folders[0][1], source)
