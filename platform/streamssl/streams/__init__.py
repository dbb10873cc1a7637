"""Ordered, non-stationary streams: plan (pure numpy), materialize and read (Ray Data), summarize.

`plan_stream` and the summaries import no Ray; the Ray-backed functions are loaded on first use.
"""

from streamssl.streams.plan import KINDS, plan_sha256, plan_stream
from streamssl.streams.split import RankSplit, rank_split

_LAZY = {
    "read_stream": "streamssl.streams.reader",
    "stream_info": "streamssl.streams.layout",
    "stream_split": "streamssl.streams.reader",
    "rank_num_samples": "streamssl.streams.reader",
    "build_stream": "streamssl.streams.build",
    "summarize_stream": "streamssl.streams.summary",
    "plot_stream_classes": "streamssl.streams.plot",
}

__all__ = ["KINDS", "RankSplit", "plan_sha256", "plan_stream", "rank_split", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'streamssl.streams' has no attribute {name!r}")
