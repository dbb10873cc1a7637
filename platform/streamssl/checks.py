"""Value checks that raise a ConfigError naming the pipeline key: shared by validation and every Params."""

from __future__ import annotations

import math
from typing import Any

from streamssl.errors import ConfigError


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def in_range(key: str, value: Any, low: float | None = None, high: float | None = None, *,
             low_open: bool = False, high_open: bool = False, none_ok: bool = False) -> None:
    """`value` is a finite number in the range (None too with `none_ok`), else ConfigError naming key."""
    if value is None and none_ok:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is not None and high is not None:
            want = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        elif low is not None:
            want = f"{'>' if low_open else '>='} {low}"
        else:
            want = f"<= {high}" if high is not None else "a finite number"
        raise ConfigError(f"{key}: must be {want}{' or null' if none_ok else ''}, got {value!r}")


def one_of(key: str, value: Any, choices: tuple) -> None:
    require(value in choices, f"{key}: one of {', '.join(map(str, choices))}, got {value!r}")


def finite_numbers(prefix: str, params: object) -> None:
    """Every number of a Params dataclass (and every item of its tuples) is finite, named `prefix.<field>`."""
    for name, value in vars(params).items():
        if isinstance(value, (tuple, list)):
            for item in value:
                in_range(f"{prefix}.{name}", item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            in_range(f"{prefix}.{name}", value)
