"""`streamssl export RUN_DIR [--at FRACTION] --out FILE [--format torchvision|timm|plain]`: a run's backbone."""

from __future__ import annotations

import argparse


def fraction(text: str) -> float:
    """argparse type: a stream fraction in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run's backbone as a torchvision / timm state dict",
                       description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (streamssl run --out)")
    p.add_argument("--at", type=fraction, default=None, metavar="FRACTION",
                   help="the snapshot nearest this fraction of the stream (runs with eval.snapshots=true); "
                        "default: the end of the run")
    # not `dest="out"`: the CLI's shared --out check wants a folder, this one names a file
    p.add_argument("--out", dest="out_file", required=True, metavar="FILE", help="the .pt file to write")
    p.add_argument("--format", dest="fmt", default=None, metavar="torchvision|timm|plain",
                   help="key layout (default: torchvision for resnet18, resnet50, resnet18_cifar; plain for "
                        "streamssl's own cnn4 / cnn4_wide, which have no torchvision or timm twin)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamssl.export import export_backbone

    done = export_backbone(args.run_dir, args.out_file, at=args.at, fmt=args.fmt)
    where = "the end of the run" if done["samples_seen"] is None else f"{done['samples_seen']} samples seen"
    print(f"exported {done['backbone']} ({done['keys']} tensors, {where}, {done['format']} format) -> {done['out']}")
    if done["format"] == "plain":
        print(f"note: {done['backbone']} is streamssl's own network; the file is its plain state dict")
    print("load it with:\n  " + "\n  ".join(done["load"]))
    return 0
