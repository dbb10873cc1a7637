"""torch.distributed helpers: the only module that imports torch.distributed.

Every helper is the identity (or a local no-op) when the default process group is not initialized
or has one rank, so single-process code calls them unconditionally. Every rank must reach every
collective helper in the same order; tie the calls to a step count that is equal on all ranks.

Cross-worker negatives for the multi-crop losses (docs/method-spec.md §2.3-2.4): `gather_crops(z)` gathers the
crops of all ranks with gradients, and `GatheredCrops.mcc_kwargs` turns them into the `means_all` /
`crops_all` and rank offset of `mcc_loss`. With a DDP mean of the gradients (Ray Train's default),

    g = gather_crops(z)
    mcc = g.weight * mcc_loss(z, tau, variant, **g.mcc_kwargs(variant))
    tcr = tcr_loss(g.crops)

gives on W ranks with local batches b_r the loss and gradients of one process with the
concatenated batch of sum_r b_r images (tests/test_distributed.py checks it). TCR is taken over the
gathered batch, not per local batch: its log-determinant does not split into a sum over ranks, so
only the gathered form makes W workers equal one worker with the whole batch; it costs each rank
the (sum_r b_r)^2 d Gram matrix that the single process would compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def is_distributed() -> bool:
    """True when a default process group is initialized (of any size)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of ranks of the default process group; 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default process group; 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def _comm_device(t: Tensor) -> torch.device:
    # a pure NCCL group moves CUDA tensors only; gloo (or "cpu:gloo,cuda:nccl") takes t where it is
    if not t.is_cuda and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return t.device


def _gather_counts(n: int, device: torch.device) -> list[int]:
    mine = torch.tensor([n], dtype=torch.long, device=device)
    counts = [torch.zeros_like(mine) for _ in range(world_size())]
    dist.all_gather(counts, mine)
    return [int(c) for c in torch.cat(counts).tolist()]


def _gather_padded(x: Tensor, counts: list[int]) -> Tensor:
    """Concatenate every rank's x (first dims `counts`) in rank order; x is on a comm device."""
    longest = max(counts)
    x = x.contiguous()
    if x.shape[0] < longest:  # all_gather needs equal shapes: pad, then cut the padding off
        x = torch.cat([x, x.new_zeros((longest - x.shape[0], *x.shape[1:]))])
    parts = [torch.empty_like(x) for _ in counts]
    dist.all_gather(parts, x)
    return torch.cat([p[:n] for p, n in zip(parts, counts)])


def all_gather_varlen(x: Tensor, counts: list[int] | None = None) -> tuple[Tensor, list[int]]:
    """Concatenation of every rank's x in rank order; first dims may differ between ranks.

    Gathers the counts first (one small collective) unless given, pads to the longest, gathers,
    unpads. The other dims and the dtype must match on every rank. No gradient flows back.

    Args:
        x: [n_r, ...] this rank's rows (any device; moved to the collective's device and back).
        counts: every rank's n_r when already known (e.g. from a previous call), saving a collective.

    Returns:
        ([sum_r n_r, ...] on x's device, [n_0, ..., n_{W-1}]).
    """
    if world_size() == 1:
        return x, [x.shape[0]]
    device = _comm_device(x)
    if counts is None:
        counts = _gather_counts(x.shape[0], device)
    elif len(counts) != world_size() or counts[rank()] != x.shape[0]:
        raise ValueError(f"all_gather_varlen: counts {counts} do not fit rank {rank()} holding {x.shape[0]} "
                         f"rows of a world of {world_size()}")
    return _gather_padded(x.detach().to(device), counts).to(x.device), counts


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: all_gather along dim 0. Backward: all_reduce-sum the gathered grad, keep own slice.

    Every rank's loss may depend on every rank's rows; summing the gathered gradients over ranks
    hands each rank d(sum_r loss_r)/d(own rows), so a DDP mean of the parameter gradients is the
    gradient of mean_r loss_r.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, counts: list[int]) -> Tensor:
        me = rank()
        ctx.start, ctx.stop = sum(counts[:me]), sum(counts[: me + 1])
        return _gather_padded(x, counts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()  # all_reduce writes in place: never into autograd's buffer
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start: ctx.stop], None


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenation of every rank's x along dim 0 in rank order, differentiable w.r.t. own x.

    First dims may differ between ranks (a small count gather precedes the data gather).

    Args:
        x: [n_r, ...] on the collective's device (CUDA for NCCL).

    Returns:
        [sum_r n_r, ...]; at world size 1, x itself.
    """
    return _gather_with_grad(x)[0]


def _gather_with_grad(x: Tensor) -> tuple[Tensor, list[int]]:
    if world_size() == 1:
        return x, [x.shape[0]]
    counts = _gather_counts(x.shape[0], _comm_device(x))
    return _AllGatherWithGrad.apply(x, counts), counts


def all_reduce_mean(x: Tensor) -> Tensor:
    """Mean of x over ranks, as a new tensor on x's device (x itself at world size 1); no gradient."""
    if world_size() == 1:
        return x
    out = x.detach().to(_comm_device(x), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return (out / world_size()).to(x.device)


@dataclass(frozen=True)
class GatheredCrops:
    """All ranks' crops for a multi-crop loss; see the module docstring for the call pattern.

    Attributes:
        crops: (N, B_all, d) every rank's z in rank order along the image dim; gradient flows back.
        offset: index of this rank's first image in `crops`.
        weight: W * b / B_all. The local MCC is a mean over this rank's N*b anchors; scaled by
            `weight`, the mean over ranks of the local losses is the mean over all N*B_all anchors
            (1.0 when every rank holds the same b).
    """

    crops: Tensor
    offset: int
    weight: float

    def mcc_kwargs(self, variant: str = "crop_anchor") -> dict:
        """Keyword arguments of `mcc_loss` for this rank's z; {} at world size 1 (mcc's own default)."""
        if world_size() == 1:
            return {}
        if variant == "mean_anchor":
            return {"crops_all": self.crops, "offset": self.offset}
        with torch.autocast(device_type=self.crops.device.type, enabled=False):
            crops = self.crops if self.crops.dtype == torch.float64 else self.crops.float()
            # the same normalized means mcc_loss computes from a local z, for every rank's images
            return {"means_all": F.normalize(crops.mean(dim=0), dim=-1), "offset": self.offset}


def gather_crops(z: Tensor) -> GatheredCrops:
    """Gather the (N, b, d) projections of every rank along the image dim, with gradients.

    Args:
        z: (N, b_r, d) this rank's projections; b_r may differ between ranks.

    Returns:
        GatheredCrops with crops (N, sum_r b_r, d); at world size 1, z itself, offset 0, weight 1.
    """
    if z.ndim != 3:
        raise ValueError(f"gather_crops: z must be (N crops, b images, d), got shape {tuple(z.shape)}")
    if world_size() == 1:
        return GatheredCrops(z, 0, 1.0)
    # gather image-major rows so each rank's block is contiguous, then restore crop-major
    rows, counts = _gather_with_grad(z.transpose(0, 1).contiguous())  # (B_all, N, d)
    weight = len(counts) * z.shape[1] / max(rows.shape[0], 1)
    return GatheredCrops(rows.transpose(0, 1), sum(counts[: rank()]), weight)
