"""Starting or joining Ray the same way everywhere (CLI, tests, benchmarks)."""

from __future__ import annotations

import os


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True) -> None:
    """Join RAY_ADDRESS/--address if given, else start a private local Ray.

    A stale cluster address left on the machine must never capture a local run, so without an
    explicit address we pass address="local".
    """
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import logging

    import ray
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-dataset INFO lines drown the progress bar

    if ray.is_initialized():
        return
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    if quiet:
        ctx.enable_progress_bars = False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=not quiet)
        return
    ray.init("local", num_cpus=num_cpus or max(os.cpu_count() or 2, 2) * 2, include_dashboard=False,
             object_store_memory=1 << 30, log_to_driver=not quiet, logging_level="WARNING")
