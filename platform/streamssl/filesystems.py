"""Which file system a path or URI lives on, and how to reach it: the settings half of `fsio`.

Local paths stay local; `s3://` URIs get a pyarrow S3FileSystem configured from the standard AWS
variables (pyarrow does not read AWS_ENDPOINT_URL itself); other URIs (`gs://`, `hdfs://`, ...) go
to `pyarrow.fs.FileSystem.from_uri`. Callers use `streamssl.fsio`, which re-exports these.
"""

from __future__ import annotations

import functools
import os
from typing import Any
from urllib.parse import urlsplit

PathLike = str | os.PathLike

# the variables an S3 client reads; Ray workers get the driver's (see `storage_env`)
S3_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
          "AWS_DEFAULT_REGION")


def is_uri(path: PathLike) -> bool:
    """Whether `path` names an object-store or other non-local file system (`scheme://...`)."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def storage_env() -> dict[str, str]:
    """The S3 variables set in this process: what Ray workers need to open the same URIs."""
    return {k: os.environ[k] for k in S3_ENV if os.environ.get(k)}


def s3_filesystem():
    """A pyarrow S3FileSystem configured from the AWS variables (see the module docstring)."""
    return _s3_for(tuple(sorted(storage_env().items())))


@functools.lru_cache(maxsize=8)
def _s3_for(settings: tuple) -> Any:
    from pyarrow import fs as pafs

    env, kwargs = dict(settings), {}
    if env.get("AWS_ENDPOINT_URL"):
        url = urlsplit(env["AWS_ENDPOINT_URL"])
        kwargs.update(endpoint_override=url.netloc or url.path, scheme=url.scheme or "https")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        kwargs.update(access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"],
                      session_token=env.get("AWS_SESSION_TOKEN"))
    return pafs.S3FileSystem(**kwargs)


def resolve(path: PathLike) -> tuple[Any, str]:
    """(pyarrow FileSystem, path inside it) for a URI; (None, path) for a local path.

    For Ray Train's `storage_filesystem` / `storage_path` and pyarrow readers' `filesystem=`.
    """
    text = os.fspath(path)
    if text.startswith("file://"):
        return None, text[len("file://"):]
    if not is_uri(text):
        return None, text
    if text.startswith("s3://"):
        return s3_filesystem(), text[len("s3://"):].rstrip("/")
    from pyarrow import fs as pafs

    filesystem, inner = pafs.FileSystem.from_uri(text)
    return filesystem, inner


def to_uri(filesystem: Any, inner: str) -> str:
    """The inverse of `resolve`: a path inside a pyarrow file system as a path or URI."""
    kind = getattr(filesystem, "type_name", "local")
    if kind in ("local", "mock"):
        return inner
    return f"{'s3' if kind == 's3' else kind}://{inner.lstrip('/')}"
