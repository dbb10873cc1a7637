"""SSL methods, registered by name (== module name == `method.name` in pipelines)."""

from streamssl.methods.base import Method, MethodParams, StepOutput
from streamssl.methods.byol import BYOL
from streamssl.methods.empssl import EMPSSL
from streamssl.methods.imai import Imai
from streamssl.methods.minred import MinRed
from streamssl.methods.scale import Scale
from streamssl.methods.simclr import SimCLR

METHODS: dict[str, type[Method]] = {"imai": Imai, "empssl": EMPSSL, "minred": MinRed,
                                    "simclr": SimCLR, "byol": BYOL, "scale": Scale}


def operating_warnings(config) -> list[str]:
    """The chosen method's operating-point warnings for a resolved RunConfig (see Method.operating_warnings)."""
    return METHODS[config.method_name].operating_warnings(config.method_params())


__all__ = ["METHODS", "Method", "MethodParams", "StepOutput", "operating_warnings"]
