"""SSL methods, registered by name (== module name == `method.name` in pipelines)."""

from __future__ import annotations

from typing import Any

from streamssl.methods.base import Method, MethodParams, StepOutput
from streamssl.methods.byol import BYOL
from streamssl.methods.empssl import EMPSSL
from streamssl.methods.imai import Imai
from streamssl.methods.minred import MinRed
from streamssl.methods.scale import Scale
from streamssl.methods.simclr import SimCLR
from streamssl.methods.supervised import Supervised

METHODS: dict[str, type[Method]] = {"imai": Imai, "empssl": EMPSSL, "minred": MinRed,
                                    "simclr": SimCLR, "byol": BYOL, "scale": Scale, "supervised": Supervised}


def method_params(section: dict[str, Any]) -> MethodParams:
    """The Params of a pipeline's `method` section ({"name": <a METHODS key>, **its fields})."""
    return METHODS[section["name"]].Params(**{k: v for k, v in section.items() if k != "name"})


def operating_warnings(config: Any) -> list[str]:
    """The chosen method's operating-point warnings for a resolved RunConfig (see Method.operating_warnings)."""
    return METHODS[config.method_name].operating_warnings(method_params(config.method))


__all__ = ["METHODS", "Method", "MethodParams", "StepOutput", "method_params", "operating_warnings"]
