"""The labelled images every evaluation uses: kNN memory, validation subset and test subset.

Memory and validation come from the train split, disjoint (the validation subset is drawn from
the rows the memory left); the test subset comes from the dataset's test split, which `prepare`
takes from the source or holds out of the samples (`streamssl.ingest.holdout`), so the three never
share a sample. Only a dataset prepared without any test split (before held-out splits existed)
tests on training images; those are still kept apart from memory and validation, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from streamssl import fsio
from streamssl.augment import to_model_input
from streamssl.config import RunConfig
from streamssl.errors import ConfigError

log = logging.getLogger(__name__)

VAL_ORIGIN = "train-minus-memory"  # the validation subset's `from=` in protocol strings


@dataclass
class EvalData:
    """Labelled model inputs (uint8 [n, 3, S, S]) with their labels [n] and sample keys."""

    memory: torch.Tensor
    memory_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    val: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    test_origin: str | None = None  # source-split, held-out-1/6 or train-split (protocol strings)
    keys: dict = field(default_factory=dict)  # memory / val / test -> list of sample keys
    skipped: list = field(default_factory=list)  # undecodable images left out ({..., where}, train.skips)
    counts: dict = field(default_factory=dict)  # memory / val / test -> {in, used, skipped}

    def __post_init__(self) -> None:
        if self.val is None:
            self.val = self.memory[:0]
            self.val_labels = self.memory_labels[:0]


def eval_rows(config: RunConfig, dataset_dir: Path) -> dict[str, tuple[Path, pd.DataFrame]]:
    """memory / val / test -> (split folder, manifest rows): seeded, and disjoint by construction."""
    from streamssl.ingest import read_manifest
    from streamssl.ingest.reader import choose_rows

    ev, seed = config.eval, config.seed
    train = read_manifest(dataset_dir)
    memory = choose_rows(train, ev.memory_samples, seed)  # the same memory as before validation existed
    rest = train.drop(index=memory.index)
    if ev.val_samples and not len(rest):
        raise ConfigError(f"eval.val_samples: the train split's {len(train)} samples all went to the kNN memory "
                          f"(eval.memory_samples {ev.memory_samples}); lower it, or set eval.val_samples=0")
    val = choose_rows(rest, ev.val_samples, seed + 2) if ev.val_samples else rest.iloc[:0]
    test_dir = fsio.join(dataset_dir, "test")
    if fsio.exists(fsio.join(test_dir, "dataset.json")):
        test = choose_rows(read_manifest(test_dir), ev.test_samples, seed + 1)
    else:
        test_dir, test = dataset_dir, choose_rows(rest.drop(index=val.index), ev.test_samples, seed + 1)
        log.warning("%s has no test split: testing on %d of its training images (outside the kNN memory and "
                    "the validation subset); re-run `streamssl prepare` to hold a test split out", dataset_dir,
                    len(test))
    return {"memory": (dataset_dir, memory), "val": (dataset_dir, val), "test": (test_dir, test)}


def load_eval_data(config: RunConfig, dataset_dir: Path) -> EvalData:
    from streamssl.ingest import load_dataset_info
    from streamssl.ingest.holdout import origin_of_test
    from streamssl.ingest.reader import label_info
    from streamssl.train.skips import load_eval_set

    info = load_dataset_info(dataset_dir)
    column, size = config.stream.label_column, config.model.image_size
    kw = {"size": config.model.read_size, "label_column": column, "strict": config.dataset.strict}
    loaded, keys, skipped, counts = {}, {}, [], {}
    for name, (folder, rows) in eval_rows(config, dataset_dir).items():
        images, labels, keys[name], (records, counts[name]) = load_eval_set(name, folder, rows, **kw)
        loaded[name] = (to_model_input(images, size), torch.from_numpy(np.array(labels)))
        skipped += records
    num_classes = (label_info(info, column) or {}).get("num_classes", info["num_classes"])
    return EvalData(*loaded["memory"], *loaded["test"], int(num_classes), *loaded["val"],
                    test_origin=origin_of_test(dataset_dir), keys=keys, skipped=skipped, counts=counts)
