"""The online learner: per stream batch, insert into the buffer, run K updates, resize.

Plain PyTorch (no Ray): the same object runs in-process and inside Ray Train workers.
Replay schedules (method-spec 2.6):
  accv   - train from the first batch; each update = the B incoming + B drawn from the rest of the
           buffer once it holds 2B; resize after the K updates.
  minred - no training until the buffer is full; resize before the K updates; every update draws
           B samples from the whole buffer.
With `learner.replay: false` (accv only) every update uses the incoming batch alone and the batch
leaves the buffer after its K updates, so no memory is kept (pure online training).

Optional method hooks: `begin_batch(images, generator)` runs once per stream batch before its K
updates, and every update's rows then start with those B incoming images (SCALE's fixed stream
views and past model). A policy with `embeds = True` (PSA) ranks raw backbone embeddings: the
buffer holds backbone-sized features, gets no EMA features from the updates, and is re-embedded
by the current model (`method.memory_embeddings`, or eval-mode `embed`) right before each resize.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from streamssl import distributed
from streamssl.augment import eval_transform
from streamssl.buffers import POLICIES, ReplayBuffer
from streamssl.config import RunConfig
from streamssl.errors import DataError, TrainingError
from streamssl.methods import METHODS
from streamssl.optim import build_optimizer, learning_rate, set_lr


@dataclass
class UpdateResult:
    update: int
    loss: float
    lr: float
    batch_size: int
    grad_cosine: float | None
    parts: dict[str, float]


def use_bf16(setting: bool | str, device: torch.device) -> bool:
    if setting != "auto":
        return bool(setting)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # bf16 pays on CPUs with AMX/AVX512-BF16 matrix units; elsewhere it is emulated and slower
    return torch.backends.cpu.get_cpu_capability() in ("AVX512_BF16", "AMX")


class Learner:
    """Owns the method, optimizer, buffer and RNG of one worker."""

    def __init__(self, config: RunConfig, device: torch.device, total_updates: int, rank: int = 0) -> None:
        self.config, self.device, self.total_updates = config, device, total_updates
        lc = config.learner
        torch.manual_seed(config.seed)  # identical initial weights on every rank and rerun
        method_cls = METHODS[config.method_name]
        self.method = method_cls(config.method_params(), config.model).to(device)
        if self._channels_last():
            self.method = self.method.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.method, lc.lr, lc.momentum, lc.weight_decay, lc.lars, lc.lars_eta)
        size = config.model.image_size
        policy_cls = POLICIES[config.buffer.policy]
        self.embeds = getattr(policy_cls, "embeds", False)
        feature_dim = self.method.feat_dim if self.embeds else self.method.feature_dim
        self.buffer = ReplayBuffer(config.buffer.size, (3, size, size), feature_dim,
                                   max_batch=lc.stream_batch, device=device, protect_new=config.buffer.protect_new)
        self.policy = policy_cls(policy_cls.Params())
        self.aug_gen = torch.Generator(device).manual_seed(config.seed * 7919 + rank)
        self.buffer_gen = torch.Generator().manual_seed(config.seed * 104729 + rank)
        self.bf16 = use_bf16(lc.bf16, device)
        self.update = 0
        self.last_loss = float("nan")
        self._prev_grad: torch.Tensor | None = None

    def _channels_last(self) -> bool:
        setting = self.config.learner.channels_last
        # channels_last measured faster for every conv backbone here, CPU (cnn4: 1.25x) and GPU
        return True if setting == "auto" else bool(setting)

    def observe(self, images: torch.Tensor, keys: list[str], labels: torch.Tensor) -> list[UpdateResult]:
        """Consume one stream batch: uint8 images [b, 3, S, S] on the device, keys, labels [b].

        b may be below B, even 0, when samples of the batch did not decode: the batch still
        makes its K updates (with B buffer entries in the stream batch's place when b is 0), so
        every DDP rank makes the same number.
        """
        new = self.buffer.insert(images, keys, labels)
        if self.config.learner.schedule == "minred":
            return self._observe_minred()
        if len(self.buffer) == 0:
            return self._nothing_to_train_on()
        if new.numel() == 0:  # no image of this stream batch decoded: B buffer entries stand in for it
            new = self.buffer.sample(self.config.learner.stream_batch, self.buffer_gen)
        begin = getattr(self.method, "begin_batch", None)
        if begin is not None:
            begin(self.buffer.images[new], self.aug_gen)
        results = [self._accv_update(new) for _ in range(self.config.learner.k)]
        if not self.config.learner.replay:
            self.buffer.remove(new)  # the buffer only carried the batch through its updates
            return results
        if self.embeds and len(self.buffer) > self.buffer.capacity:
            self._embed_buffer()
        self.buffer.resize(self.policy, self.buffer_gen)
        return results

    def _accv_update(self, new: torch.Tensor) -> UpdateResult:
        b = new.numel()
        replay = torch.empty(0, dtype=torch.long)
        if self.config.learner.replay and len(self.buffer) >= 2 * b:
            replay = self.buffer.sample(b, self.buffer_gen, exclude=new)
        return self._update(torch.cat([new.cpu(), replay.cpu()]))

    def _nothing_to_train_on(self) -> list[UpdateResult]:
        """An empty stream batch and an empty buffer: alone, skip the batch; with DDP, stop.

        Other ranks make K updates on their batches, and each one is a collective this rank
        cannot join without an image (it would deadlock them), so the run stops, in one line.
        """
        if distributed.world_size() == 1:
            return []
        raise DataError(f"rank {distributed.rank()}: no image of stream batch {self.buffer.steps} decoded and "
                        "the replay buffer is empty, so this worker has nothing to make its updates on; "
                        "re-run `streamssl prepare` with verification, or use one worker")

    def _embed_buffer(self) -> None:
        """Overwrite buffer.features with raw backbone embeddings of every entry (for PSA)."""
        embed = getattr(self.method, "memory_embeddings", None) or self._eval_embeddings
        # raw, not update_features: that would L2-normalize and EMA them
        self.buffer.features.copy_(embed(self.buffer.images))

    @torch.no_grad()
    def _eval_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Eval-mode backbone features (N, feat_dim), inputs normalized as the crops (augment.TRAIN_MEAN/STD)."""
        was_training = self.method.training
        self.method.eval()
        try:
            return torch.cat([self.method.embed(eval_transform(images[i:i + 512])).float()
                              for i in range(0, images.shape[0], 512)])
        finally:
            self.method.train(was_training)

    def _observe_minred(self) -> list[UpdateResult]:
        # full by the count of stream batches, equal on every rank even when a batch came short
        if self.buffer.steps * self.config.learner.stream_batch < self.buffer.capacity:
            return []
        if len(self.buffer) == 0:
            return self._nothing_to_train_on()
        if self.embeds and len(self.buffer) > self.buffer.capacity:
            self._embed_buffer()
        self.buffer.resize(self.policy, self.buffer_gen)
        b = self.config.learner.stream_batch
        return [self._update(self.buffer.sample(b, self.buffer_gen)) for _ in range(self.config.learner.k)]

    def _update(self, slots: torch.Tensor) -> UpdateResult:
        lr = learning_rate(self.config.learner.lr, self.config.learner.lr_schedule, self.update, self.total_updates)
        set_lr(self.optimizer, lr)
        images = self.buffer.images[slots.to(self.buffer.images.device)]
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        try:
            with autocast:
                out = self.method.step(images, self.aug_gen)
        except torch.linalg.LinAlgError as err:  # logdet/cholesky of non-finite features
            raise TrainingError(f"non-finite features at update {self.update + 1} ({err})") from err
        loss = out.loss.float()
        if not torch.isfinite(loss):
            raise TrainingError(f"loss is {loss.item()} at update {self.update + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._average_gradients()
        cosine = self._grad_cosine() if self.config.learner.grad_cosine else None
        self.optimizer.step()
        self.update += 1
        self.method.after_step(self.update, self.total_updates)
        if not self.embeds:
            self.buffer.update_features(slots, out.features.float(), self.config.buffer.ema_alpha)
        return UpdateResult(self.update, loss.item(), lr, int(slots.numel()), cosine, out.parts)

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
        return {"method": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                "buffer": self.buffer.state_dict(), "update": self.update,
                "aug_gen": self.aug_gen.get_state(), "buffer_gen": self.buffer_gen.get_state()}


# TEMPORARY (helper "story"): the learner-owned state that helper "contracts" is adding to the
# class (state_dict with prev_grad and everything a checkpoint restores, load_state_dict(state,
# device)). Replace this block with that version when merging.
import random  # noqa: E402

import numpy as np  # noqa: E402


def _state_dict(self) -> dict:
    """Everything a fresh `Learner` built from the same config needs to continue bit-identically."""
    prev = self._prev_grad
    return {"method": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(), "policy": self.policy.state_dict(),
            "aug_gen": self.aug_gen.get_state(), "buffer_gen": self.buffer_gen.get_state(),
            "global_rng": _global_rng_state(), "update": self.update,
            "total_updates": self.total_updates,  # with `update`: the LR schedule's position
            "last_loss": float(self.last_loss), "prev_grad": None if prev is None else prev.detach().cpu().clone()}


def _load_state_dict(self, state: dict, device: torch.device) -> None:
    self.method.load_state_dict(state["method"])
    self.optimizer.load_state_dict(state["optimizer"])  # moves momentum buffers to the params' device
    self.buffer.load_state_dict(state["buffer"])
    self.policy.load_state_dict(state["policy"])
    self.aug_gen.set_state(state["aug_gen"])
    self.buffer_gen.set_state(state["buffer_gen"])
    _set_global_rng_state(state["global_rng"])
    self.update, self.last_loss = state["update"], state["last_loss"]
    prev = state["prev_grad"]
    self._prev_grad = None if prev is None else prev.to(device)


Learner.state_dict = _state_dict
Learner.load_state_dict = _load_state_dict


def _global_rng_state() -> dict:
    """torch (CPU and CUDA), numpy and python global RNG states as tensors and plain values."""
    algo, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda,
            "numpy": {"algo": algo, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}


def _set_global_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["algo"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


