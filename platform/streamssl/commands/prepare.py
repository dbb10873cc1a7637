"""`streamssl prepare SOURCE [PATH] --out DIR`: write WebDataset shards, manifest and dataset.json."""

from __future__ import annotations

import argparse
import time

from streamssl.commands._args import non_negative_int, positive_int

# Not imported from streamssl.ingest: building the CLI parser must stay cheap (no pandas/pyarrow).
DEFAULT_SHARD_SIZE = 10_000


def register(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="turn an image source into WebDataset shards + manifest",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
    )
    p.add_argument(
        "source", metavar="SOURCE", help="fashion-mnist | cifar10 | cifar100 | imagefolder | wds | synthetic"
    )
    p.add_argument(
        "path",
        metavar="PATH",
        nargs="?",
        default=None,
        help="input folder (fashion-mnist defaults to /usr/share/datasets/fashion-mnist)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (test split in DIR/test)")
    p.add_argument(
        "--shard-size",
        type=positive_int,
        default=DEFAULT_SHARD_SIZE,
        metavar="N",
        help=f"samples per shard (default {DEFAULT_SHARD_SIZE}; shards also close past ~500 MB)",
    )
    p.add_argument("--strict", action="store_true", help="stop at the first bad sample (exit 2)")
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="wds: skip the per-image header check (huge sets)",
    )
    p.add_argument("--test-path", metavar="PATH", help="imagefolder/wds: folder holding the test split")
    p.add_argument(
        "--test-fraction",
        metavar="F",
        help="imagefolder/wds without --test-path: class-stratified fraction of the samples held out "
        "as the test split, e.g. 1/6 or 0.2 (default 1/6)",
    )
    syn = p.add_argument_group("synthetic source")
    syn.add_argument("--classes", type=int, metavar="C", help="number of classes (default 10)")
    syn.add_argument(
        "--samples-per-class", type=int, metavar="N", help="train images per class (default 100)"
    )
    syn.add_argument("--size", type=int, metavar="S", help="image side in pixels (default 32)")
    syn.add_argument("--seed", type=non_negative_int, metavar="S", help="random seed (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamssl.ingest import load_dataset_info, prepare
    from streamssl.ingest.build import SOURCES
    from streamssl.ingest.options import check_source_input, check_source_options

    if args.source in SOURCES:  # bad options or a missing or wrong PATH fail before --out is created
        given = {"classes": args.classes, "samples_per_class": args.samples_per_class, "size": args.size,
                 "seed": args.seed, "test_path": args.test_path}
        check_source_options(args.source, {k: v for k, v in given.items() if v is not None})
        check_source_input(args.source, args.path, args.test_path)
    start = time.perf_counter()
    info = prepare(
        args.source,
        args.path,
        args.out,
        shard_size=args.shard_size,
        strict=args.strict,
        verify=args.verify,
        test_path=args.test_path,
        test_fraction=args.test_fraction,
        classes=args.classes,
        samples_per_class=args.samples_per_class,
        size=args.size,
        seed=args.seed,
    )
    test = f", test {load_dataset_info(f'{args.out}/test')['num_samples']}" if info.get("test") else ""
    split = info.get("test_split") or {}
    test += f" (held out {split['fraction_text']})" if split.get("kind") == "held-out" else ""
    test += f", no test split ({split['reason']})" if split.get("kind") == "none" else ""
    print(
        f"prepared {args.source}: {info['num_samples']} samples{test}, {info['num_classes']} classes, "
        f"{info['num_shards']} shards, {len(info['skipped'])} skipped, "
        f"{time.perf_counter() - start:.1f} s -> {args.out}"
    )
    return 0
