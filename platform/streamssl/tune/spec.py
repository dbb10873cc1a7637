"""Search specs (tune/*.yaml): parsing and validation, with no Ray import.

Everything a user can get wrong is checked here, before Ray starts a trial: the spec's own keys,
each space entry's distribution and range, every candidate value against the base pipeline's
schema (so an unknown key or an out-of-range value names itself), the metric and the scheduler.
Cluster resources are checked in `search.py`, which has Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamssl import config as cfg
from streamssl import resolve
from streamssl.errors import ConfigError

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint", "grid")
ALGORITHMS = {"random": "random", "grid": "grid", "tpe": "tpe", "optuna": "tpe"}
# What trials report at every evaluation point (streamssl.train.worker.tune_report_hook). The
# val_* metrics score the validation subset (train-split images outside the kNN memory); knn and
# knn_auc score the test subset: selecting on them tunes to the test images, so they are for
# reporting (selectable, with a warning in the leaderboard)
VAL_METRICS = ("val_knn", "val_knn_auc")
TEST_METRICS = ("knn", "knn_auc")
METRICS = VAL_METRICS + TEST_METRICS
# the leaderboard column that ranks trials by each search metric
SORT_COLUMN = {"val_knn": "val_knn", "val_knn_auc": "val_knn_auc", "knn": "final_knn", "knn_auc": "knn_auc"}
SPEC_KEYS = ("base", "overrides", "space", "search")
SEARCH_KEYS = ("algorithm", "num_samples", "metric", "mode", "max_concurrent", "seed", "asha")
ASHA_KEYS = ("grace", "reduction_factor")


@dataclass(frozen=True)
class Param:
    """One searched key: `kind` in DISTRIBUTIONS; `values` the list (choice/grid) or [lo, hi]."""

    key: str
    kind: str
    values: list

    def candidates(self) -> list:
        """Values that bound what a trial can get: every listed value, or both range ends."""
        return list(self.values)


@dataclass(frozen=True)
class Asha:
    grace: float = 0.25  # fraction of the stream every trial runs before it can be stopped
    reduction_factor: int = 2


@dataclass(frozen=True)
class SearchSpec:
    path: Path
    base: Path
    base_flat: dict  # the base pipeline as dotted keys, spec `overrides` applied (extends resolved)
    space: tuple[Param, ...]
    algorithm: str = "random"
    num_samples: int = 4  # grid: repeats of the whole grid (default 1)
    metric: str = "val_knn"
    mode: str = "max"
    max_concurrent: int = 1
    seed: int = 0
    asha: Asha | None = field(default_factory=Asha)

    @property
    def name(self) -> str:
        return self.path.stem


def load_spec(path: str | Path) -> SearchSpec:
    """Parse and validate a search spec; ConfigError (one line, naming the key) on bad input."""
    path = Path(path)
    data = _read_mapping(path)
    _no_unknown(data, SPEC_KEYS, "")
    base = _base_path(path, data.get("base"))
    overrides = _mapping(data.get("overrides") or {}, "overrides")
    base_flat = {**cfg.load_flat(base), **overrides}
    space = tuple(parse_param(key, value) for key, value in _mapping(data.get("space"), "space").items())
    if not space:
        raise ConfigError("space: empty; name at least one config key to search")
    spec = SearchSpec(path=path.resolve(), base=base, base_flat=base_flat, space=space,
                      **_search_fields(_mapping(data.get("search") or {}, "search")))
    check_space(spec)
    return spec


def _read_mapping(path: Path) -> dict:
    return cfg.load_yaml(path, "search spec")


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping, got {value!r}")
    return value


def _no_unknown(data: dict, known: tuple, prefix: str) -> None:
    for key in data:
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown key (known: {', '.join(known)})")


def _base_path(spec_path: Path, base: Any) -> Path:
    if not isinstance(base, str) or not base:
        raise ConfigError("base: give the pipeline YAML to search over (absolute, or relative to the spec)")
    found = (spec_path.parent / base).resolve()
    if not found.is_file():
        raise ConfigError(f"base: pipeline not found: {found}")
    return found


def parse_param(key: str, entry: Any) -> Param:
    """`{uniform: [lo, hi]}` etc. -> Param; ranges must be non-empty and ordered."""
    where = f"space.{key}"
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ConfigError(f"{where}: must be one of {{{': ..., '.join(DISTRIBUTIONS)}: ...}}, got {entry!r}")
    (kind, values), = entry.items()
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution {kind!r} (known: {', '.join(DISTRIBUTIONS)})")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: {kind} needs a non-empty list, got {values!r}")
    if kind in ("choice", "grid"):
        return Param(key, kind, values)
    return Param(key, kind, _range(where, kind, values))


def _range(where: str, kind: str, values: list) -> list:
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if len(values) != 2 or not numeric:
        raise ConfigError(f"{where}: {kind} needs [lo, hi] numbers, got {values!r}")
    lo, hi = values
    if not lo < hi:
        raise ConfigError(f"{where}: empty or inverted range [{lo}, {hi}] (need lo < hi)")
    if kind == "randint" and not (isinstance(lo, int) and isinstance(hi, int)):
        raise ConfigError(f"{where}: randint needs integer bounds, got {values!r}")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"{where}: loguniform needs lo > 0, got {lo}")
    return [lo, hi]


def _search_fields(search: dict) -> dict:
    _no_unknown(search, SEARCH_KEYS, "search.")
    out = dict(search)
    algorithm = str(out.get("algorithm", "random"))
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"search.algorithm: one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    out["algorithm"] = ALGORITHMS[algorithm]
    out.setdefault("num_samples", 1 if out["algorithm"] == "grid" else 4)
    for key in ("num_samples", "max_concurrent"):
        if key in out and not (isinstance(out[key], int) and out[key] >= 1):
            raise ConfigError(f"search.{key}: must be an integer >= 1, got {out[key]!r}")
    if out.get("metric", "val_knn") not in METRICS:
        raise ConfigError(f"search.metric: trials report {', '.join(METRICS)}, not {out['metric']!r}")
    if out.get("mode", "max") not in ("max", "min"):
        raise ConfigError(f"search.mode: max or min, got {out['mode']!r}")
    if "seed" in out and not isinstance(out["seed"], int):
        raise ConfigError(f"search.seed: must be an integer, got {out['seed']!r}")
    out["asha"] = _asha(out.get("asha", {}))
    return out


def _asha(value: Any) -> Asha | None:
    if value is False or value is None:
        return None
    if value is True:
        return Asha()
    _no_unknown(_mapping(value, "search.asha"), ASHA_KEYS, "search.asha.")
    asha = Asha(**value)
    if not (isinstance(asha.grace, (int, float)) and 0 < asha.grace < 1):
        raise ConfigError(f"search.asha.grace: a stream fraction in (0, 1), got {asha.grace!r}")
    if not (isinstance(asha.reduction_factor, int) and asha.reduction_factor >= 2):
        raise ConfigError(f"search.asha.reduction_factor: an integer >= 2, got {asha.reduction_factor!r}")
    return asha


def check_space(spec: SearchSpec) -> None:
    """Algorithm/distribution fit, and every candidate value resolved against the base pipeline."""
    for param in spec.space:
        if param.key.startswith("dataset.") or param.key == "dataset":
            raise ConfigError(f"space.{param.key}: the dataset cannot vary within one search "
                              "(datasets are prepared once, before trials); run one search per dataset")
        if spec.algorithm == "grid" and param.kind not in ("grid", "choice"):
            raise ConfigError(f"space.{param.key}: search.algorithm grid takes grid or choice lists, "
                              f"not {param.kind}")
        if spec.algorithm == "tpe" and param.kind == "grid":
            raise ConfigError(f"space.{param.key}: TPE cannot take a grid; use choice")
        for value in param.candidates():
            checked = candidate_config(spec, {param.key: value}, where=f"space.{param.key}")
            _check_validation(spec, checked, f"space.{param.key}")
    _check_validation(spec, candidate_config(spec, {}), "base")


def _check_validation(spec: SearchSpec, config: cfg.RunConfig, where: str) -> None:
    """A validation metric needs trials that have a validation subset."""
    if spec.metric in VAL_METRICS and config.eval.val_samples == 0:
        raise ConfigError(f"search.metric: {spec.metric} needs a validation subset, but {where} sets "
                          "eval.val_samples=0 (give it a size, or select on knn, a test metric)")


def candidate_config(spec: SearchSpec, params: dict, where: str = "base") -> cfg.RunConfig:
    """The base pipeline with `params` applied, re-raising schema errors under `where`."""
    try:
        return trial_config(spec.base_flat, params)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from err


def trial_config(base_flat: dict, params: dict) -> cfg.RunConfig:
    """Base dotted keys + a trial's params, resolved as `resolve.load` would (per_method, then params)."""
    explicit = dict(base_flat)
    name = params.get("method.name", explicit.get("method.name", cfg.DEFAULT_METHOD))
    explicit.update(resolve.per_method(explicit, name))
    explicit.update(params)
    return resolve.resolve(explicit)


def plain(value: Any) -> Any:
    """A sampled value as plain Python (samplers may hand out numpy scalars, which YAML and the
    config schema do not take)."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def plain_params(params: dict) -> dict:
    return {key: plain(value) for key, value in params.items()}
