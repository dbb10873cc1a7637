"""`streamssl score DATASET_DIR --by loss|class-distance`: a per-sample difficulty column in the manifest."""

from __future__ import annotations

import argparse

# Not imported from streamssl.scoring's scorers: building the CLI parser must stay cheap (no torch).
from streamssl.commands._args import non_negative_int, positive_int
from streamssl.scoring import SCORER_NAMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="write a per-sample difficulty column (curriculum streams)",
                       description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("dataset_dir", metavar="DATASET_DIR", help="a `streamssl prepare` output folder")
    p.add_argument("--by", required=True, metavar="|".join(SCORER_NAMES),
                   help="loss: out-of-fold cross-entropy of a small supervised CNN; "
                        "class-distance: distance to the class mean of normalized 16x16 pixels")
    p.add_argument("--column", default=None, metavar="NAME",
                   help="column to write (default difficulty_loss / difficulty_class_distance)")
    p.add_argument("--label-column", default="label", help="manifest label column defining the classes")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--threads", type=positive_int, default=None, metavar="N", help="torch threads (default: all)")
    p.add_argument("--force", action="store_true",
                   help="overwrite an existing column that is not a recorded score")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    loss = p.add_argument_group("--by loss (defaults: scoring.loss.LossParams)")
    loss.add_argument("--folds", type=int, help="out-of-fold splits (default 2)")
    loss.add_argument("--epochs", type=int, help="training epochs per fold (default 3)")
    loss.add_argument("--train-samples", type=int, metavar="N", help="training subset per fold (default 10000)")
    loss.add_argument("--batch-size", type=int, help="training batch (default 128)")
    loss.add_argument("--lr", type=float, help="Adam learning rate (default 0.002)")
    loss.add_argument("--image-size", type=int, metavar="S", help="network input side (default 32)")
    dist = p.add_argument_group("--by class-distance")
    dist.add_argument("--size", type=int, metavar="S", help="pixel feature side (default 16)")
    p.set_defaults(func=run)


_LOSS_ONLY = ("folds", "epochs", "train_samples", "batch_size", "lr", "image_size")
_DISTANCE_ONLY = ("size",)


def run(args: argparse.Namespace) -> int:
    from streamssl.errors import ConfigError
    from streamssl.scoring import score_dataset

    own, other = (_LOSS_ONLY, _DISTANCE_ONLY) if args.by == "loss" else (_DISTANCE_ONLY, _LOSS_ONLY)
    given = [name for name in other if getattr(args, name) is not None]
    if given and args.by in SCORER_NAMES:
        flag = "--" + given[0].replace("_", "-")
        raise ConfigError(f"{flag}: not a setting of --by {args.by}")
    params = {name: getattr(args, name) for name in own}
    summary = score_dataset(args.dataset_dir, args.by, args.column, seed=args.seed, threads=args.threads,
                            force=args.force, label_column=args.label_column, progress=args.progress,
                            **params)
    print(format_summary(summary, args.dataset_dir))
    return 0


def format_summary(s: dict, dataset_dir: str) -> str:
    """Two lines: what was written where, and how the scores are spread over samples and classes."""
    easy, hard = s["easiest_class"], s["hardest_class"]
    return (f"scored {s['num_samples']} samples by {s['method']} into column {s['column']!r} "
            f"({s['seconds']:.1f} s) -> {dataset_dir}/manifest.parquet\n"
            f"  min {s['min']:.4g}  median {s['median']:.4g}  mean {s['mean']:.4g}  max {s['max']:.4g}; "
            f"easiest class {easy['name']} (median {easy['median']:.4g}), "
            f"hardest {hard['name']} (median {hard['median']:.4g})")
