"""What a run records about where it came from: code version, config, data and its labels."""

from __future__ import annotations

import subprocess
from pathlib import Path

from streamssl.config import RunConfig


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_info(config: RunConfig, dataset_dir: Path, class_names: list, status: str, **extra) -> dict:
    """run.json's provenance fields (the rest is added as the run goes)."""
    from streamssl.methods import operating_warnings

    return {"name": config.name, "method": config.method_name, "stream": config.stream.kind,
            "dataset": config.dataset.source, "dataset_dir": str(dataset_dir),
            "label_column": config.stream.label_column, "num_classes": len(class_names),
            "class_names": class_names, "seed": config.seed, "status": status, "git_sha": git_sha(),
            "config": "config.yaml", "warnings": operating_warnings(config), **extra}


def class_names(dataset_dir: Path, column: str) -> list:
    """The names of the classes the stream segments by (`stream.label_column`)."""
    from streamssl.ingest import load_dataset_info
    from streamssl.ingest.reader import label_info

    info = load_dataset_info(dataset_dir)
    return (label_info(info, column) or {}).get("class_names", info["class_names"])
