"""Total coding rate (TCR) of EMP-SSL, Tong et al. 2023.

https://arxiv.org/abs/2304.03977
"""

from __future__ import annotations

import torch

from streamssl.errors import ConfigError
from streamssl.losses._checks import check_crops, upcast


def tcr_loss(z: torch.Tensor, eps: float = 0.2) -> torch.Tensor:
    """-(1/N) sum_i 1/2 logdet(I_d + d/(b*eps) Z_i^T Z_i), with Z_i = z[i] of shape (b, d).

    When b < d the b x b form is used: by Sylvester's determinant identity
    logdet(I_d + c Z^T Z) = logdet(I_b + c Z Z^T), so the cost is O(b^2 d + b^3) instead of
    O(b d^2 + d^3). The matrix is symmetric positive definite (eigenvalues >= 1), so the log
    determinant is twice the log of the Cholesky diagonal. Computed in float32 even under autocast.
    Note the scale d/(b*eps), not d/(b*eps^2), as in EMP-SSL's code.

    Args:
        z: (N, b, d) projections of N crops of b images (L2-normalized in EMP-SSL).
        eps: distortion > 0.

    Returns:
        scalar loss (negative: larger coding rate is better).
    """
    if eps <= 0:
        raise ConfigError(f"tcr_loss: eps must be > 0, got {eps}")
    check_crops(z, "tcr_loss")
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = upcast(z)
        _, b, d = z.shape
        gram = z @ z.transpose(1, 2) if b < d else z.transpose(1, 2) @ z  # (N, m, m), m = min(b, d)
        eye = torch.eye(gram.shape[-1], dtype=z.dtype, device=z.device)
        chol = torch.linalg.cholesky(eye + (d / (b * eps)) * gram)
        logdet = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (N,)
        return -0.5 * logdet.mean()
