"""Which runs `streamssl report` may average: the same dataset, stream and resolved config but the seed.

A run's config is its run directory's config.yaml (the resolved pipeline). Runs of one method that
differ in any key other than the seed become separate rows, labelled with the keys that differ, and
the report says so; they are never averaged. `name` (a label) and `dataset.dir` (a location:
the dataset's identity is compared instead) do not split cells. Run directories without a
config.yaml (older runs) are grouped by dataset, method and stream alone.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import yaml

from streamssl import fsio
from streamssl.config import flatten
from streamssl.errors import StreamSSLError, first_line

CONFIG_FILE = "config.yaml"
NOT_SETTINGS = ("seed", "name", "dataset.dir")  # never split cells: the seed, a label, a location
MISSING = "∅"  # a key one run's config has and another's lacks
SHOWN_KEYS = 3  # keys spelled out in a row label; more get a digest so labels stay unique


def load_config(run_dir: Path) -> dict | None:
    """The run's resolved config as dotted keys, None when the run dir has no config.yaml."""
    path = fsio.join(run_dir, CONFIG_FILE)
    if not fsio.is_file(path):
        return None
    try:
        data = yaml.safe_load(fsio.read_text(path)) or {}
    except (OSError, yaml.YAMLError) as err:
        raise StreamSSLError(f"{path}: unreadable ({first_line(err)})") from err
    if not isinstance(data, dict):
        raise StreamSSLError(f"{path}: not a config mapping")
    return {key: value for key, value in flatten(data).items() if key not in NOT_SETTINGS}


def dataset_identity(info: dict) -> tuple:
    """run.json's dataset_id (name + sha256) when present, else the prepared dataset's directory,
    else (older runs) its name."""
    ident = info.get("dataset_id")
    if isinstance(ident, dict) and ident.get("sha256"):
        return ("sha256", str(ident.get("name", "?")), str(ident["sha256"]))
    if info.get("dataset_dir"):
        return ("dir", fsio.absolute(str(info["dataset_dir"])))
    dataset = info.get("dataset", "?")
    return ("name", str(dataset.get("name", "?") if isinstance(dataset, dict) else dataset))


def dataset_titles(runs) -> dict[tuple, str]:
    """A heading per dataset identity: its name, disambiguated when two identities share one."""
    names = {run.dataset_key: run.dataset for run in runs}
    clashes = Counter(names.values())
    titles = {}
    for key, name in names.items():
        if clashes[name] == 1:
            titles[key] = name
        else:
            detail = f"sha256 {key[2][:12]}" if key[0] == "sha256" else f"{key[0]} {key[-1]}"
            titles[key] = f"{name} ({detail})"
    return titles


def _settings(run) -> dict:
    return run.config if run.config is not None else {CONFIG_FILE: "missing"}


def _differing(runs) -> set[str]:
    """Keys whose values are not all equal over the runs (a key some runs lack counts)."""
    configs = [_settings(run) for run in runs]
    keys = set().union(*configs)
    return {k for k in keys if len({_text(c.get(k, MISSING)) for c in configs}) > 1}


def _text(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _label(run, varying: list[str]) -> str:
    settings = _settings(run)
    shown = ", ".join(f"{k}={_short(settings.get(k, MISSING))}" for k in varying[:SHOWN_KEYS])
    if len(varying) > SHOWN_KEYS:
        digest = hashlib.sha256(_text([settings.get(k, MISSING) for k in varying]).encode()).hexdigest()[:6]
        shown += f", +{len(varying) - SHOWN_KEYS} more keys #{digest}"
    return f"{run.method} ({shown})"


def label_runs(runs) -> dict[tuple, list[str]]:
    """Set each run's `label` (its Table-1 row) and return, per dataset identity, notes saying why
    runs of one method were not averaged, which settings differ between streams, and repeated seeds."""
    notes: dict[tuple, list[str]] = defaultdict(list)
    groups = defaultdict(list)
    for run in runs:
        groups[(run.dataset_key, run.method)].append(run)
    for (dataset_key, method), members in groups.items():
        by_stream = defaultdict(list)
        for run in members:
            by_stream[run.stream].append(run)
        varying = sorted(set().union(*(_differing(group) for group in by_stream.values())))
        for run in members:
            run.label = _label(run, varying) if varying else method
        if varying:
            notes[dataset_key].append(f"{method}: runs differ in {', '.join(f'`{k}`' for k in varying)}; each "
                                      "setting is its own row (runs are averaged only over seeds)")
        across = sorted(_differing(members) - set(varying) - {"stream.kind"})
        if across:
            notes[dataset_key].append(f"{method}: {', '.join(f'`{k}`' for k in across)} differ between streams "
                                      "(one setting per stream column)")
    for run_list in _cells(runs).values():
        seeds = Counter(str(run.seed) for run in run_list)
        repeated = sorted(seed for seed, count in seeds.items() if count > 1)
        if repeated:
            first = run_list[0]
            notes[first.dataset_key].append(f"{first.label} on {first.stream}: several runs with seed "
                                            f"{', '.join(repeated)}: reruns of one setting, not independent seeds")
    return notes


def _cells(runs) -> dict[tuple, list]:
    cells = defaultdict(list)
    for run in runs:
        cells[(run.dataset_key, run.label, run.stream)].append(run)
    return cells
