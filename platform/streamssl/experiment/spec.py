"""Experiment specs (experiments/*.yaml): parsing, validation and the run matrix, with no Ray import.

A spec names a base pipeline and the axes of the matrix (methods, stream kinds, seeds, an optional
grid of further keys); every combination of method, stream and grid values is a cell, and every
cell runs once per seed. Everything is checked here before any work: the spec's own keys, and
every generated run config resolved by `streamssl.resolve.load`, so a bad override or grid value
names its spec key and the pipeline key.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamssl import config as cfg
from streamssl import fsio, resolve
from streamssl.errors import ConfigError, first_line

SPEC_KEYS = ("base", "methods", "streams", "seeds", "overrides", "grid", "reference", "max_concurrent", "transfer")
# config keys that are axes of the matrix: set by the spec key named here, never by overrides/grid
AXES = {"method.name": "methods", "stream.kind": "streams", "seed": "seeds"}


@dataclass(frozen=True)
class RunSpec:
    """One run of the matrix: a cell (method, stream, grid values) and a seed."""

    method: str
    stream: str
    seed: int
    grid: tuple[tuple[str, Any], ...] = ()  # (dotted key, value) in the spec's grid order
    cell: str = ""  # filesystem-safe cell name, set by `expand`

    @property
    def name(self) -> str:
        return f"{self.cell}-s{self.seed}"

    @property
    def cell_key(self) -> tuple:
        """What identifies the cell regardless of seed."""
        return (self.method, self.stream, self.grid)

    def params(self) -> dict[str, Any]:
        """The dotted keys this run sets on top of the base pipeline and the spec's overrides."""
        return {"method.name": self.method, "stream.kind": self.stream, "seed": self.seed, **dict(self.grid)}


@dataclass(frozen=True)
class ExperimentSpec:
    path: Path
    base: Path
    methods: tuple[str, ...]
    streams: tuple[str, ...]
    seeds: tuple[int, ...]
    overrides: dict = field(default_factory=dict)  # dotted keys applied to every run
    grid: dict = field(default_factory=dict)  # dotted key -> list of values, in spec order
    reference: str | None = None
    max_concurrent: int = 1
    transfer: tuple[Path | str, ...] = ()  # prepared datasets every completed run is also evaluated on (str: a URI)

    @property
    def name(self) -> str:
        return self.path.stem

    def matrix(self) -> dict:
        """What defines the runs (compared on --resume): the axes, overrides and the base's keys."""
        return {"methods": list(self.methods), "streams": list(self.streams), "seeds": list(self.seeds),
                "overrides": self.overrides, "grid": self.grid, "base": cfg.load_flat(self.base)}


def load_spec(path: str | Path, extra_overrides: dict | None = None) -> ExperimentSpec:
    """Parse and validate an experiment spec; ConfigError (one line, naming the spec key) on bad input.

    `extra_overrides` (dotted keys) are added to the spec's overrides (`streamssl demo key=value`).
    """
    path = Path(path)
    data = _read_mapping(path)
    for key in data:
        if key not in SPEC_KEYS:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(SPEC_KEYS)})")
    overrides = _overrides({**_mapping_or_empty(data.get("overrides"), "overrides"), **(extra_overrides or {})})
    spec = ExperimentSpec(
        path=path.resolve(), base=_base_path(path, data.get("base")),
        methods=tuple(_names(data.get("methods"), "methods")), streams=tuple(_names(data.get("streams"), "streams")),
        seeds=tuple(_seeds(data.get("seeds"))), overrides=overrides, grid=_grid(data.get("grid")),
        reference=data.get("reference"), max_concurrent=_max_concurrent(data.get("max_concurrent", 1)),
        transfer=_transfer(path, data.get("transfer")))
    _check_reference(spec)
    check_configs(spec)
    return spec


def _read_mapping(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"experiment spec not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({first_line(err)})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an experiment spec must be a mapping, got {type(data).__name__}")
    return data


def _base_path(spec_path: Path, base: Any) -> Path:
    if not isinstance(base, str) or not base:
        raise ConfigError("base: give the pipeline YAML every run starts from (absolute, or relative to the spec)")
    found = (spec_path.parent / base).resolve()
    if not found.is_file():
        raise ConfigError(f"base: pipeline not found: {found}")
    return found


def _list(value: Any, key: str) -> list:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key}: must be a non-empty list, got {value!r}")
    if len({repr(v) for v in value}) != len(value):
        raise ConfigError(f"{key}: lists a value twice: {value!r}")
    return value


def _names(value: Any, key: str) -> list[str]:
    names = _list(value, key)
    bad = [v for v in names if not isinstance(v, str) or not v]
    if bad:
        raise ConfigError(f"{key}: entries must be names, got {bad[0]!r}")
    if key == "methods":
        from streamssl.methods import METHODS

        unknown = [v for v in names if v not in METHODS]
        if unknown:
            raise ConfigError(f"methods: unknown method {unknown[0]!r} (known: {', '.join(sorted(METHODS))})")
    return names


def _seeds(value: Any) -> list[int]:
    seeds = _list(value, "seeds")
    bad = [v for v in seeds if not isinstance(v, int) or isinstance(v, bool) or v < 0]
    if bad:
        raise ConfigError(f"seeds: entries must be integers >= 0, got {bad[0]!r}")
    return seeds


def _not_an_axis(key: str, where: str) -> None:
    if key in AXES:
        raise ConfigError(f"{where}.{key}: set by the spec's `{AXES[key]}` key, not here")


def _mapping_or_empty(value: Any, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a mapping of config keys, got {value!r}")
    return value


def _overrides(value: dict) -> dict:
    flat = cfg.flatten(value)
    for key in flat:
        _not_an_axis(key, "overrides")
    return flat


def _grid(value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"grid: must be a mapping of config keys to lists of values, got {value!r}")
    for key, values in value.items():
        _not_an_axis(key, "grid")
        if key == "dataset" or str(key).startswith("dataset."):
            raise ConfigError(f"grid.{key}: the dataset cannot vary within one experiment (it is prepared "
                              "once, before the runs); run one experiment per dataset")
        _list(values, f"grid.{key}")
    return dict(value)


def _transfer(spec_path: Path, value: Any) -> tuple[Path | str, ...]:
    """Prepared dataset dirs (a URI, absolute, or relative to the spec), with distinct folder names:
    the summary's columns are named transfer_<folder name>_knn / _linear."""
    if value is None:
        return ()
    found = tuple(_dataset_location(spec_path, str(d)) for d in _list(value, "transfer"))
    for path in found:
        if not fsio.is_file(fsio.join(path, "dataset.json")):
            raise ConfigError(f"transfer: {path} is not a prepared dataset (no dataset.json; `streamssl prepare`)")
    names = [fsio.name(p) for p in found]
    if len(set(names)) != len(names):
        raise ConfigError(f"transfer: two datasets share a folder name ({', '.join(names)}); the summary "
                          "columns need distinct ones")
    return found


def _dataset_location(spec_path: Path, text: str) -> Path | str:
    """A URI as it is (normalized); a local path resolved against the spec's folder."""
    return fsio.normpath(text) if fsio.is_uri(text) else (spec_path.parent / text).resolve()


def _max_concurrent(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"max_concurrent: must be an integer >= 1, got {value!r}")
    return value


def _check_reference(spec: ExperimentSpec) -> None:
    if spec.reference is not None and spec.reference not in spec.methods:
        raise ConfigError(f"reference: {spec.reference!r} is not one of methods ({', '.join(spec.methods)})")


def run_config(spec: ExperimentSpec, run: RunSpec, pinned: dict | None = None) -> cfg.RunConfig:
    """The resolved config of one run: base <- per_method <- overrides <- the run's axes <- pinned."""
    return resolve.load(spec.base, {**spec.overrides, **run.params(), **(pinned or {})})


def _resolves(spec: ExperimentSpec, params: dict, where: str, overrides: bool = True) -> None:
    try:
        resolve.load(spec.base, {**(spec.overrides if overrides else {}), **params})
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from err


def _check_method(spec: ExperimentSpec, method: str) -> None:
    """Blame the overrides when the base alone takes this method, else the method."""
    try:
        _resolves(spec, {"method.name": method}, "overrides")
    except ConfigError:
        _resolves(spec, {"method.name": method}, f"methods: {method}", overrides=False)
        raise


def check_configs(spec: ExperimentSpec) -> None:
    """Resolve every run config, blaming the narrowest spec key first (method, overrides, stream,
    one grid value), then every full combination under its cell's name."""
    first = spec.methods[0]
    for method in spec.methods:
        _check_method(spec, method)
    for stream in spec.streams:
        _resolves(spec, {"method.name": first, "stream.kind": stream}, f"streams: {stream}")
    for key, values in spec.grid.items():
        for value, method in itertools.product(values, spec.methods):
            _resolves(spec, {"method.name": method, key: value}, f"grid.{key}")
    for run in expand(spec):
        where = f"grid: cell {run.cell}" if spec.grid else f"methods/streams: {run.method} on {run.stream}"
        _resolves(spec, run.params(), where)


def expand(spec: ExperimentSpec) -> list[RunSpec]:
    """Every run, cell by cell (methods, then streams, then grid values) and seed by seed."""
    keys = list(spec.grid)
    shorts = _short_keys(keys)
    runs = []
    for method, stream, combo in itertools.product(spec.methods, spec.streams,
                                                   itertools.product(*(spec.grid[k] for k in keys))):
        grid = tuple(zip(keys, combo))
        cell = "-".join([method, stream, *(f"{shorts[k]}{_safe(v)}" for k, v in grid)])
        runs += [RunSpec(method, stream, seed, grid, cell) for seed in spec.seeds]
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        clash = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"grid: two cells get the same run directory name {clash!r}; use distinct values")
    return runs


def _short_keys(keys: list[str]) -> dict[str, str]:
    """A grid key's label in run names: its last part (`crops`), or the whole key when ambiguous."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k.replace(".", "_")) for k, s in zip(keys, last)}


def _safe(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return re.sub(r"[^A-Za-z0-9.+_-]+", "_", text).strip("_") or "x"


def cells(runs: list[RunSpec]) -> dict[tuple, list[RunSpec]]:
    """cell_key -> its runs (seed order), in matrix order."""
    out: dict[tuple, list[RunSpec]] = {}
    for run in runs:
        out.setdefault(run.cell_key, []).append(run)
    return out
