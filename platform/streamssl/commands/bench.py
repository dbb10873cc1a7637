"""`streamssl bench NAME`: benchmarks that print ratios measured in one run (never run by tests)."""

from __future__ import annotations

import argparse
import importlib

# name -> module in streamssl.bench exposing add_arguments(parser) and run(args) -> int
BENCHES = {
    "stream": "streamssl.bench.stream",
    "buffer": "streamssl.bench.buffer",
    "augment": "streamssl.bench.augment",
    "step": "streamssl.bench.step",
    "ddp": "streamssl.bench.ddp",
    "scale": "streamssl.bench.scale",
    "gpu": "streamssl.bench.gpu",
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="run a benchmark and print its figures")
    benches = parser.add_subparsers(dest="bench", required=True, metavar="NAME")
    for name, module in BENCHES.items():
        bench = importlib.import_module(module)
        sub_parser = benches.add_parser(name, help=(bench.__doc__ or "").splitlines()[0])
        bench.add_arguments(sub_parser)
        sub_parser.set_defaults(func=bench.run)
