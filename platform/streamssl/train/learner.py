"""The online learner: per stream batch, insert into the buffer and make the replay schedule's K updates.

Plain PyTorch (no Ray): the same object runs in-process and inside Ray Train workers. The
schedules (which entries each update trains on, when the buffer is resized) are in
`streamssl.train.replay`; the method's hooks are declared in `streamssl.methods.base`. A policy
with `embeds = True` (PSA) ranks raw backbone embeddings: the buffer holds backbone-sized
features, gets no EMA features from the updates, and is re-embedded by the current model
(`method.memory_embeddings`) right before each resize.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from streamssl import buffers, distributed
from streamssl.compute import count_flops
from streamssl.config import RunConfig
from streamssl.errors import DataError, TrainingError
from streamssl.optim import build_optimizer, learning_rate, scaled_lr, set_lr
from streamssl.resolve import build_method, build_policy
from streamssl.train.replay import SCHEDULES


@dataclass
class UpdateResult:
    update: int
    loss: float
    lr: float
    batch_size: int
    grad_cosine: float | None
    parts: dict[str, float]


def effective_lr(config: RunConfig) -> float:
    """learner.lr scaled to the global batch (num_workers x stream_batch) by learner.lr_scaling,
    relative to learner.lr_reference_batch: the lr the schedule (and warmup) starts from."""
    lc = config.learner
    return scaled_lr(lc.lr, lc.lr_scaling, config.scaling.num_workers * lc.stream_batch, lc.lr_reference_batch)


def use_bf16(setting: bool | str, device: torch.device) -> bool:
    if setting != "auto":
        return bool(setting)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # bf16 pays on CPUs with AMX/AVX512-BF16 matrix units; elsewhere it is emulated and slower
    return torch.backends.cpu.get_cpu_capability() in ("AVX512_BF16", "AMX")


class Learner:
    """Owns the method, optimizer, buffer, policy and RNGs of one worker, and counts its stream batches."""

    def __init__(self, config: RunConfig, device: torch.device, total_updates: int, rank: int = 0) -> None:
        self.config, self.device, self.total_updates = config, device, total_updates
        lc = config.learner
        torch.manual_seed(config.seed)  # identical initial weights on every rank and rerun
        self.method = build_method(config).to(device)
        if lc.channels_last:
            self.method = self.method.to(memory_format=torch.channels_last)
        self.base_lr = effective_lr(config)
        self.optimizer = build_optimizer(self.method, self.base_lr, lc.momentum, lc.weight_decay, lc.lars,
                                         lc.lars_eta)
        size = config.model.image_size
        self.policy = build_policy(config)
        width = self.method.backbone_dim if self.policy.embeds else self.method.proj_dim
        self.buffer = buffers.ReplayBuffer(config.buffer.size, (3, size, size), width, max_batch=lc.stream_batch,
                                           device=device, protect_new=config.buffer.protect_new)
        self.schedule = SCHEDULES[lc.schedule]
        self.aug_gen = torch.Generator(device).manual_seed(config.seed * 7919 + rank)
        self.buffer_gen = torch.Generator().manual_seed(config.seed * 104729 + rank)
        self.bf16 = use_bf16(lc.bf16, device)
        self.update = 0
        self.batches = 0  # stream batches observed
        self.last_loss = float("nan")
        self._prev_grad: torch.Tensor | None = None  # the last update's flat gradient, for grad_cosine
        # FLOPs of this process's first update (forward + backward, torch's counter); every update
        # of a run has the same shapes, so it stands for all of them (streamssl.compute)
        self.flops_per_update: int | None = None

    def observe(self, images: torch.Tensor, keys: list[str], labels: torch.Tensor) -> list[UpdateResult]:
        """Consume one stream batch: uint8 images [b, 3, S, S] on the device, keys, labels [b].

        b may be below B, even 0, when samples of the batch did not decode: the batch still
        makes its K updates (with B buffer entries in the stream batch's place when b is 0), so
        every DDP rank makes the same number.
        """
        new = self.buffer.insert(images, keys, labels)
        self.batches += 1
        return self.schedule.observe(self, new)

    def nothing_to_train_on(self) -> list[UpdateResult]:
        """An empty stream batch and an empty buffer: alone, skip the batch; with DDP, stop.

        Other ranks make K updates on their batches, and each one is a collective this rank
        cannot join without an image (it would deadlock them), so the run stops, in one line.
        """
        if distributed.world_size() == 1:
            return []
        raise DataError(f"rank {distributed.rank()}: no image of stream batch {self.batches} decoded and "
                        "the replay buffer is empty, so this worker has nothing to make its updates on; "
                        "re-run `streamssl prepare` with verification, or use one worker")

    def resize(self) -> None:
        """Bring the buffer back to capacity with the policy (re-embedding it first for `embeds` policies)."""
        if self.policy.embeds and len(self.buffer) > self.buffer.capacity:
            # raw, not update_features: that would L2-normalize and EMA them
            self.buffer.features.copy_(self.method.memory_embeddings(self.buffer.images))
        buffers.resize(self.buffer, self.policy, self.buffer_gen)

    def draw_replay(self, n: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """n replay entries avoiding `exclude`: uniform, or by inverse local feature density
        (`learner.replay_weighting: density`, buffers/density.py)."""
        if self.config.learner.replay_weighting == "density":
            return buffers.density_sample(self.buffer, n, self.buffer_gen, exclude)
        return self.buffer.sample(n, self.buffer_gen, exclude=exclude)

    def train_on(self, slots: torch.Tensor) -> UpdateResult:
        """One optimizer update on the buffer entries at `slots`."""
        lc = self.config.learner
        lr = learning_rate(self.base_lr, lc.lr_schedule, self.update, self.total_updates, lc.warmup_updates)
        set_lr(self.optimizer, lr)
        images = self.buffer.images[slots.to(self.buffer.images.device)]
        counting = self.flops_per_update is None
        with count_flops() if counting else contextlib.nullcontext() as flops:
            out, loss = self._forward_backward(slots, images)
        if counting:
            self.flops_per_update = flops.total
        self._average_gradients()
        cosine = self._grad_cosine() if self.config.learner.grad_cosine else None
        self.optimizer.step()
        self.update += 1
        self.method.after_step(self.update, self.total_updates)
        if not self.policy.embeds:
            self.buffer.update_features(slots, out.features.float(), self.config.buffer.ema_alpha)
        if self.policy.needs_sample_loss:
            self.policy.record_losses(self.buffer, slots, out.sample_loss)
        return UpdateResult(self.update, loss.item(), lr, int(slots.numel()), cosine, out.parts)

    def _forward_backward(self, slots: torch.Tensor, images: torch.Tensor):
        """The method's step and the backward pass; (StepOutput, float32 loss)."""
        # labels reach only the supervised reference learner (methods/base.py, needs_labels)
        labels = {"labels": self.buffer.labels[slots.to(self.buffer.device)]} if self.method.needs_labels else {}
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        try:
            with autocast:
                out = self.method.step(images, self.aug_gen, **labels)
        except torch.linalg.LinAlgError as err:  # logdet/cholesky of non-finite features
            raise TrainingError(f"non-finite features at update {self.update + 1} ({err})") from err
        loss = out.loss.float()
        if not torch.isfinite(loss):
            raise TrainingError(f"loss is {loss.item()} at update {self.update + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return out, loss

    def _average_gradients(self) -> None:
        """DDP's all-reduce, done by hand on one flat vector (methods call their modules directly)."""
        if not distributed.is_distributed():
            return
        params = [p for p in self.method.parameters() if p.grad is not None]
        flat = distributed.all_reduce_mean(torch.cat([p.grad.flatten() for p in params]))
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(g.view_as(p.grad))

    def _grad_cosine(self) -> float | None:
        """Cosine between this update's gradient and the previous one's (the paper's Figure 1)."""
        grads = [p.grad.flatten() for p in self.method.parameters() if p.grad is not None]
        flat = torch.cat(grads).float()
        prev, self._prev_grad = self._prev_grad, flat
        if prev is None or prev.numel() != flat.numel():
            return None
        return F.cosine_similarity(flat, prev, dim=0).item()

    def state_dict(self) -> dict:
        """Everything a Learner built from the same config needs to continue bit-identically
        (plain tensors and values: loadable with torch.load(weights_only=True))."""
        prev = self._prev_grad
        return {"method": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                "buffer": self.buffer.state_dict(), "policy": self.policy.state_dict(),
                "update": self.update, "batches": self.batches, "total_updates": self.total_updates,
                "last_loss": float(self.last_loss), "aug_gen": self.aug_gen.get_state(),
                "buffer_gen": self.buffer_gen.get_state(), "global_rng": global_rng_state(),
                "prev_grad": None if prev is None else prev.detach().cpu().clone()}

    def load_state_dict(self, state: dict, device: torch.device | None = None) -> None:
        """Restore a `state_dict` (the global RNGs included); tensors go to `device` (default: the learner's)."""
        device = device or self.device
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])  # moves momentum buffers to the params' device
        self.buffer.load_state_dict(state["buffer"])
        self.policy.load_state_dict(state["policy"])
        self.aug_gen.set_state(state["aug_gen"])
        self.buffer_gen.set_state(state["buffer_gen"])
        set_global_rng_state(state["global_rng"])
        self.update, self.last_loss = state["update"], state["last_loss"]
        self.batches = state.get("batches", self.buffer.steps)  # states saved before it: one insert per batch
        prev = state["prev_grad"]
        self._prev_grad = None if prev is None else prev.to(device)


def global_rng_state() -> dict:
    """torch (CPU and CUDA), numpy and python global RNG states as tensors and plain values."""
    algo, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda,
            "numpy": {"algo": algo, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}


def set_global_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["algo"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
