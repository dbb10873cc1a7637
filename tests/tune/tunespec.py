"""Search specs for the tune tests."""

from pathlib import Path

import yaml

SMOKE = Path(__file__).resolve().parents[2] / "pipelines" / "smoke.yaml"
# one thread, two crops, four intermediate eval points: the cheapest trial that still has rungs
MICRO = {"learner.threads": 1, "method.crops": 2, "eval.points": [0, 0.25, 0.5, 0.75, 1.0]}


def write_spec(folder: Path, space: dict, search: dict | None = None, base: str = str(SMOKE),
               overrides: dict | None = None) -> Path:
    """A search spec file over the smoke pipeline."""
    spec = {"base": base, "overrides": {**MICRO, **(overrides or {})}, "space": space,
            "search": search or {}}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
