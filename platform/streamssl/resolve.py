"""From a pipeline file and overrides to a validated RunConfig, and from a RunConfig to a method and policy.

The one module that reads the METHODS and POLICIES registries for configuration. Resolution order,
lowest to highest: the schema's defaults (`config`), the chosen method's `presets` (`minred` sets
`learner.schedule: minred`), its `stream_presets` for the chosen stream kind (scale's iid
threshold), then explicit values (pipeline file and command line alike). Then the `method` keys
are checked against the method's Params and `buffer.params` against the policy's, and the whole
config is validated; every error names its key.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from streamssl import validation
from streamssl.buffers import POLICIES, SelectionPolicy
from streamssl.checks import require
from streamssl.config import (
    DEFAULT_METHOD,
    RunConfig,
    StreamConfig,
    build,
    check_type,
    flatten,
    load_flat,
    parse_overrides,
)
from streamssl.errors import ConfigError
from streamssl.methods import METHODS, Method, MethodParams, method_params
from streamssl.models import ModelSpec
from streamssl.train.replay import SCHEDULES


def load(path: str | Path | None, overrides: list[str] | dict | None = None) -> RunConfig:
    """Load a pipeline file plus overrides into a validated RunConfig (ConfigError names the key).

    The `per_method` blocks of the methods not chosen are validated too, as `method.name=<that
    method>` would resolve them, so a typo fails now rather than when that method's turn comes.
    """
    explicit = load_flat(path) if path else {}
    extra = overrides if isinstance(overrides, dict) else parse_overrides(overrides or [])
    blocks = method_blocks(explicit)
    name = extra.get("method.name", explicit.get("method.name", DEFAULT_METHOD))
    config = resolve({**explicit, **(blocks.get(name, {}) if isinstance(name, str) else {}), **extra})
    shared = {k: v for k, v in {**explicit, **extra}.items() if not k.startswith("method.")}
    for other, block in blocks.items():
        if other != name:
            try:
                # a policy only some methods can run (hard) is the chosen method's business alone
                resolve({**shared, **block, "method.name": other}, pairing=False)
            except ConfigError as err:
                raise ConfigError(f"per_method.{other}: {err}") from None
    return config


def method_blocks(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pop the `per_method.<method>` blocks out of `flat`; {method: its keys, dotted}."""
    if flat.get("per_method", {}) is None:
        flat.pop("per_method")
    if "per_method" in flat:
        raise ConfigError(f"per_method: must be a mapping of method names, got {flat['per_method']!r}")
    blocks: dict[str, dict[str, Any]] = {}
    for key in [k for k in flat if k.startswith("per_method.")]:
        block, method = flat.pop(key), key.split(".", 1)[1]
        if method not in METHODS:
            raise ConfigError(f"{key}: unknown method {method!r} (known: {', '.join(sorted(METHODS))})")
        if not isinstance(block, dict):
            raise ConfigError(f"{key}: must be a mapping of config keys")
        blocks[method] = flatten(block)
        if "method.name" in blocks[method] or any(k.startswith("per_method") for k in blocks[method]):
            raise ConfigError(f"{key}: sets method.name or per_method, which a per-method block cannot")
    return blocks


def per_method(flat: dict[str, Any], name: str) -> dict[str, Any]:
    """Pop `per_method.<method>` blocks; return the chosen method's as dotted keys.

    Lets one pipeline carry method-specific keys (e.g. `method.crops` for the multi-crop methods)
    and still run every method by overriding `method.name` alone.
    """
    return method_blocks(flat).get(name, {})


def resolve(explicit: dict[str, Any], pairing: bool = True) -> RunConfig:
    """Defaults <- method presets <- explicit dotted keys, then type checks and every rule.

    `pairing=False` skips the check that the method provides what the policy ranks (`load` checks
    other methods' `per_method` blocks so)."""
    name = explicit.get("method.name", DEFAULT_METHOD)
    if not isinstance(name, str) or name not in METHODS:
        raise ConfigError(f"method.name: unknown method {name!r} (known: {', '.join(sorted(METHODS))})")
    kind = explicit.get("stream.kind", StreamConfig.kind)
    by_stream = METHODS[name].stream_presets.get(kind, {}) if isinstance(kind, str) else {}
    config = _typed_sections(build({**METHODS[name].presets, **by_stream, **explicit}))
    validation.validate(config)
    _validate_registered(config)
    if pairing:
        _check_pairing(config)
    return config


def _typed_sections(config: RunConfig) -> RunConfig:
    """`method.*` checked against the method's Params and `buffer.params` against the policy's."""
    name, policy = config.method_name, config.buffer.policy
    fields = {k: v for k, v in config.method.items() if k != "name"}
    method = {"name": name, **_params_section("method", fields, METHODS[name].Params, f"method {name!r}")}
    require(policy in POLICIES, f"buffer.policy: unknown policy {policy!r} (known: {', '.join(sorted(POLICIES))})")
    params = _params_section("buffer.params", config.buffer.params, POLICIES[policy].Params, f"policy {policy!r}")
    return dataclasses.replace(config, method=method, buffer=dataclasses.replace(config.buffer, params=params))


def _params_section(prefix: str, values: dict, params_cls: type, owner: str) -> dict:
    """`values` type-checked against the fields of `params_cls`; ConfigError names `prefix.<key>`."""
    hints = typing.get_type_hints(params_cls)
    for key in values:
        if key not in hints:
            raise ConfigError(f"{prefix}.{key}: not a parameter of {owner} (it takes: {', '.join(hints) or 'none'})")
    return {key: check_type(f"{prefix}.{key}", value, hints[key]) for key, value in values.items()}


def _validate_registered(config: RunConfig) -> None:
    """The rules that need the chosen method's and policy's classes."""
    method_params(config.method).validate()
    policy_params(config).validate()
    learner, name = config.learner, config.method_name
    require(not METHODS[name].needs_stream_rows or SCHEDULES[learner.schedule].stream_rows,
            f"learner.schedule: method {name!r} needs the accv schedule, got {learner.schedule!r}")


def _check_pairing(config: RunConfig) -> None:
    name = config.method_name
    require(not POLICIES[config.buffer.policy].needs_sample_loss or METHODS[name].provides_sample_loss,
            f"buffer.policy: {config.buffer.policy!r} ranks per-sample losses, which method {name!r} does not "
            f"provide (methods that do: {', '.join(sorted(m for m in METHODS if METHODS[m].provides_sample_loss))})")


def with_dataset_classes(config: RunConfig, num_classes: int) -> RunConfig:
    """`method.classes` left at 0 (methods that train a classifier: supervised) set to the dataset's
    class count; any other config unchanged."""
    fields = METHODS[config.method_name].Params.__dataclass_fields__
    if "classes" not in fields or config.method.get("classes", 0):
        return config
    return dataclasses.replace(config, method={**config.method, "classes": num_classes})


def policy_params(config: RunConfig) -> SelectionPolicy.Params:
    """The chosen policy's Params, built from `buffer.params`."""
    return POLICIES[config.buffer.policy].Params(**config.buffer.params)


def model_spec(config: RunConfig) -> ModelSpec:
    m = config.model
    return ModelSpec(backbone=m.backbone, image_size=m.image_size, proj_hidden_dim=m.proj_hidden_dim,
                     proj_dim=m.proj_dim, init_from=m.init_from, grad_checkpointing=m.grad_checkpointing)


def build_method(config: RunConfig) -> Method:
    """The chosen method with its parameters, freshly initialized (draws from torch's global RNG)."""
    params: MethodParams = method_params(config.method)
    return METHODS[config.method_name](params, model_spec(config))


def build_policy(config: RunConfig) -> SelectionPolicy:
    return POLICIES[config.buffer.policy](policy_params(config))
