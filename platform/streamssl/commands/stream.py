"""`streamssl stream DATASET_DIR --kind K --out STREAM_DIR`: an ordered stream over a prepared dataset."""

from __future__ import annotations

import argparse

from streamssl.commands._args import non_negative_int, positive_int
from streamssl.errors import ConfigError, renamed
from streamssl.streams.plan import KINDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stream", help="plan and materialize (--virtual: only index) a stream (iid, seq, seq-bl, ...)",
                       description=__doc__.splitlines()[0])
    p.add_argument("dataset_dir", metavar="DATASET_DIR", help="a `streamssl prepare` output folder")
    p.add_argument("--kind", required=True, help="iid | seq | seq-bl | seq-im | custom")
    p.add_argument("--samples-per-class", default=None, metavar="N|N1,N2,...",
                   help="samples per class (capped at what exists), one count or one per class")
    p.add_argument("--blend-ratio", type=float, default=0.5, help="seq-bl boundary blending (0..1)")
    p.add_argument("--class-order", default="natural", metavar="natural|random|FILE",
                   help="segment order: label order, seeded random, or a file of class ids/names")
    p.add_argument("--label-column", default="label", help="manifest label column to segment by")
    p.add_argument("--classes-per-segment", type=int, default=1, metavar="K",
                   help="K classes per segment, mixed within it")
    p.add_argument("--order-by", default=None, metavar="[-]COLUMN[,...]",
                   help="manifest column(s) ordering `custom`: `-` descending, later columns break ties")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--out", required=True, metavar="STREAM_DIR")
    p.add_argument("--shard-size", type=positive_int, default=5000, help="samples per stream shard")
    p.add_argument("--strict", action="store_true", help="stop at the first bad sample")
    p.add_argument("--virtual", action="store_true",
                   help="write only the plan (index.parquet, stream.json); reads fetch each sample's bytes "
                        "from the dataset's shards by byte range (fast local or low-latency storage)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    p.set_defaults(func=run)


def parse_counts(text: str | None) -> int | list[int] | None:
    """`N` -> N, `N1,N2,...` -> [N1, N2, ...]."""
    if text is None:
        return None
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--samples-per-class: {text!r} is not N or N1,N2,...") from None
    return counts if "," in text else counts[0]


def _flag(name: str) -> str | None:
    if name == "labels":
        return "DATASET_DIR"
    flag = "--" + name.replace("_", "-")
    return flag if name.isidentifier() and flag in _FLAGS else None


_FLAGS = ("--kind", "--samples-per-class", "--blend-ratio", "--class-order", "--label-column",
          "--classes-per-segment", "--order-by", "--seed")


def run(args: argparse.Namespace) -> int:
    from streamssl.streams.build import build_stream
    from streamssl.streams.summary import summarize_stream

    if args.kind not in KINDS:
        raise ConfigError(f"--kind: unknown stream kind {args.kind!r} (choose from {', '.join(KINDS)})")
    recorded = {k: v for k, v in vars(args).items() if k not in ("func", "command", "verbose")}
    with renamed(_flag):  # the planner names its arguments (blend_ratio); here the user typed flags
        build_stream(args.dataset_dir, args.out, kind=args.kind,
                     samples_per_class=parse_counts(args.samples_per_class), blend_ratio=args.blend_ratio,
                     class_order=args.class_order, label_column=args.label_column,
                     classes_per_segment=args.classes_per_segment, order_by=args.order_by, seed=args.seed,
                     shard_size=args.shard_size, strict=args.strict, args=recorded,
                     address=args.address, virtual=args.virtual)
    print(summarize_stream(args.out))
    return 0
