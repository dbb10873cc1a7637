"""`streamssl eval SOURCE --dataset DATASET_DIR --out DIR`: kNN and linear probe of a frozen backbone elsewhere."""

from __future__ import annotations

import argparse

from streamssl.commands._args import non_negative_int, positive_int
from streamssl.commands.export import fraction


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="transfer evaluation of a run's (or a file's) backbone on another dataset",
                       description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("source", metavar="SOURCE", help="a run directory, or a backbone file (with --backbone)")
    p.add_argument("--dataset", required=True, metavar="DATASET_DIR", help="a `streamssl prepare` output folder")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for eval.json and report.md")
    p.add_argument("--at", type=fraction, default=None, metavar="FRACTION",
                   help="a run's snapshot nearest this fraction of the stream (eval.snapshots=true)")
    p.add_argument("--backbone", default=None, metavar="NAME", help="architecture of a backbone file (resnet18, ...)")
    p.add_argument("--image-size", type=positive_int, default=None, metavar="S",
                   help="model input side (default: the run's model.image_size; for a file, the dataset's)")
    p.add_argument("--memory-samples", type=positive_int, default=None, metavar="N",
                   help="labelled kNN memory / probe training images (default: the run's eval.memory_samples)")
    p.add_argument("--test-samples", type=positive_int, default=None, metavar="N", help="test images scored")
    p.add_argument("--knn-k", type=positive_int, default=None, metavar="K", help="neighbours (default: the run's)")
    p.add_argument("--bn", default="running", metavar="running|recalibrate",
                   help="BatchNorm statistics: the backbone's own, or recomputed on the memory images")
    p.add_argument("--no-linear", dest="linear", action="store_false", help="kNN only")
    p.add_argument("--seed", type=non_negative_int, default=0, help="chooses the labelled subsets")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from streamssl.errors import ConfigError
    from streamssl.evaluation.transfer import load_model, transfer_eval, write_outputs

    model = load_model(args.source, at=args.at, backbone=args.backbone, image_size=args.image_size)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") or device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device: cpu or cuda (with a visible GPU), got {device!r}")
    overrides = {"memory_samples": args.memory_samples, "test_samples": args.test_samples, "knn_k": args.knn_k}
    result = transfer_eval(model, args.dataset, seed=args.seed, bn=args.bn, linear=args.linear, device=device,
                           overrides=overrides)
    eval_path, report_path = write_outputs(result, args.out)
    for value in result["results"].values():
        print(f"{100 * value['top1']:6.2f}%  {value['protocol']}")
    print(f"eval:   {eval_path}\nreport: {report_path}")
    return 0
