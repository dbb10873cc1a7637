"""Starting or joining Ray the same way everywhere (CLI, tests, benchmarks)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from urllib.parse import urlsplit

from streamssl.errors import ConfigError, StreamSSLError

_started_local = False  # this process started a private local Ray: its resources are this machine's
# default ports: Ray Client (ray://), the dashboard / Jobs API (http://), the GCS (host alone)
_PORTS = {"ray": 10001, "http": 8265, "https": 443, "": 6379}
CONNECT_TIMEOUT_S = 5.0
T = TypeVar("T")


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True,
             address_name: str = "--address") -> None:
    """Join RAY_ADDRESS/--address if given, else start a private local Ray.

    A stale cluster address left on the machine must never capture a local run, so without an
    explicit address we pass address="local". An address that nothing answers at fails in
    seconds with a ConfigError naming `address_name` (or RAY_ADDRESS), where ray.init would hang.
    """
    global _started_local
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import logging

    import ray
    import ray.data  # configures its loggers on import: only then can their level be set

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-dataset INFO lines drown the progress bar

    if ray.is_initialized():
        return
    set_data_context(quiet)
    explicit = address
    if address:
        check_ray_address(address, address_name)
    else:
        check_ray_address()
        address = os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        try:
            ray.init(address=address, log_to_driver=not quiet)
        except (ConnectionError, RuntimeError) as err:  # it answers TCP but is no (compatible) Ray
            reason = " ".join(str(err).split())[:200]
            raise ConfigError(f"{address_name if address == explicit else 'RAY_ADDRESS'}={address}: cannot join "
                              f"the Ray cluster there ({reason})") from None
        return
    try:
        ray.init("local", num_cpus=num_cpus or max(os.cpu_count() or 2, 2) * 2, include_dashboard=False,
                 object_store_memory=1 << 30, log_to_driver=not quiet, logging_level="WARNING")
    except Exception as err:  # ray.init raises a bare Exception when its processes do not come up in time
        reason = " ".join(str(err).split())[:200]
        raise StreamSSLError(f"could not start a local Ray ({reason}); a heavily loaded machine is the usual "
                             f"cause: try again, or join a running cluster with RAY_ADDRESS") from None
    _started_local = True


def init_ray_during(work: Callable[[], T], address: str | None = None) -> T:
    """work() in a thread while `init_ray` starts or joins Ray; its result, once both are done.

    For work that needs no Ray (a virtual stream's index): starting a local Ray is mostly waiting
    for its processes (seconds), which the work's Arrow and numpy code fills. The work's own
    error, if it fails, is raised rather than Ray's.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="streamssl-beside-ray") as pool:
        future = pool.submit(work)
        try:
            init_ray(address)
        except BaseException:
            if future.exception() is not None:
                raise future.exception() from None
            raise
        return future.result()


def set_data_context(quiet: bool = False) -> None:
    """Ray Data's settings, set here only: blocks in order (the stream's order is the experiment)
    and, when quiet, no progress bars. The context is per process, so the driver (`init_ray`) and
    each process that reads a stream (`streams.reader`, inside Ray Train workers too) call this."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    if quiet:
        ctx.enable_progress_bars = False


def _ray_running() -> bool:
    ray = sys.modules.get("ray")  # not imported: not running, and no need to pay for the import
    return ray is not None and ray.is_initialized()


def check_ray_address(address: str | None = None, name: str = "RAY_ADDRESS") -> None:
    """ConfigError in seconds when nothing answers at a Ray address (ray.init would wait for minutes).

    Args:
        address: `host:port` (GCS), `ray://host:port`, `http://host:port`, `auto` or `local`;
            None: the RAY_ADDRESS variable, if set.
        name: what the user set, for the message (`RAY_ADDRESS`, `--address`).
    """
    if address is None:
        address, name = os.environ.get("RAY_ADDRESS"), "RAY_ADDRESS"
    if not address or address == "local" or _ray_running():
        return
    target = _resolve_auto(name) if address == "auto" else address
    host, port = _host_port(target, name, address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"{name}={address}: no Ray cluster answers at {host}:{port} ({reason}); start it, "
                          f"or unset {name} to run on a private local Ray") from None


def _host_port(target: str, name: str, address: str) -> tuple[str, int]:
    scheme, sep, rest = target.partition("://")
    scheme = scheme if sep else ""
    try:
        parts = urlsplit("//" + (rest if sep else target))
        host, port = parts.hostname, parts.port or _PORTS.get(scheme.lower())
    except ValueError:
        host = port = None
    if not host or port is None:
        raise ConfigError(f"{name}={address}: not a Ray address (host:port, ray://host:port or auto)")
    return host, port


def _resolve_auto(name: str) -> str:
    """The cluster `auto` means: the last `ray start` on this machine (Ray's own lookup)."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        found = canonicalize_bootstrap_address("auto")
    except (ConnectionError, ValueError) as err:
        raise ConfigError(f"{name}=auto: no Ray cluster was started on this machine ({err})") from None
    if not found:
        raise ConfigError(f"{name}=auto: no Ray cluster was started on this machine")
    return found


def visible_gpus() -> tuple[int | None, str]:
    """(GPUs a run on this machine can use, who counted them).

    Ray's count in the private local Ray this process started, torch's before one is started;
    None when the run joins a cluster, which may add GPU nodes on demand (the cluster configs
    here autoscale GPU workers from zero).
    """
    if _ray_running():
        if not _started_local:
            return None, "Ray"
        import ray

        return int(ray.cluster_resources().get("GPU", 0)), "Ray"
    if os.environ.get("RAY_ADDRESS", "local") not in ("", "local"):
        return None, "Ray"
    import torch

    return torch.cuda.device_count(), "torch"
