"""What a method needs to know of the model section to build its networks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """The backbone and head sizes a method is built with (`resolve.model_spec` reads them off a RunConfig).

    Attributes:
        backbone: a key of BACKBONES.
        image_size: side S of the square training crops.
        proj_hidden_dim: projection head width; None: the method's own default.
        proj_dim: projection output width; None: the method's own default.
        init_from: a backbone file or finished run dir whose backbone the method starts from.
        grad_checkpointing: recompute the backbone's stage activations in the backward pass.
    """

    backbone: str
    image_size: int
    proj_hidden_dim: int | None = None
    proj_dim: int | None = None
    init_from: str | None = None
    grad_checkpointing: bool = False
