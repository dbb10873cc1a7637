"""ReplayBuffer: preallocated tensor storage for the replay buffer; selection lives in the policies.

Slots [0, len) are occupied. Inserting writes B slots after the last one, sampling draws B indices,
removing moves the last entries into the holes: each costs O(B), never O(capacity). Lifespans are
derived from a per-entry birth step, so ageing every entry on insert is free.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_TENSORS = ("images", "labels", "features", "birth", "seen", "uid", "stamp")


class ReplayBuffer:
    """Fixed-capacity buffer of stream samples with their EMA features, lifespan and seen flag.

    Holds up to capacity + max_batch entries: a stream batch is inserted first and the buffer is
    brought back to `capacity` by `buffers.resize` (a policy's selection) afterwards.

    Each entry also carries `uids` (its insertion ordinal) and `feature_stamps` (a random token drawn
    by every `update_features` call, -1 while unseen), which let a policy cache per-entry results
    across calls and tell exactly which entries changed since.
    """

    def __init__(self, capacity: int, image_shape: tuple[int, int, int], feature_dim: int, max_batch: int,
                 device: str | torch.device = "cpu", protect_new: int = 0) -> None:
        if capacity < 1 or max_batch < 1 or feature_dim < 1 or protect_new < 0:
            raise ValueError(f"capacity, max_batch and feature_dim must be >= 1 and protect_new >= 0, got "
                             f"{capacity}, {max_batch}, {feature_dim}, {protect_new}")
        self.capacity, self.max_batch = capacity, max_batch
        self.protect_new = protect_new  # inserts during which a new entry survives resizes (see buffers.protect)
        self.image_shape, self.feature_dim = tuple(image_shape), feature_dim
        self.device = torch.device(device)
        slots = capacity + max_batch
        kw = {"device": self.device}
        self._images = torch.zeros((slots, *self.image_shape), dtype=torch.uint8, **kw)
        self._labels = torch.zeros(slots, dtype=torch.long, **kw)
        self._features = torch.zeros((slots, feature_dim), dtype=torch.float32, **kw)
        self._birth = torch.zeros(slots, dtype=torch.long, **kw)
        self._seen = torch.zeros(slots, dtype=torch.bool, **kw)
        self._uid = torch.zeros(slots, dtype=torch.long, **kw)
        self._stamp = torch.full((slots,), -1, dtype=torch.long, **kw)
        self.keys: list[str] = []
        self._size = 0
        self.steps = 0  # insert calls so far: the clock lifespans are measured in
        self.inserted = 0  # entries ever inserted: the reservoir's item counter and the next uid

    def __len__(self) -> int:
        return self._size

    @property
    def images(self) -> Tensor:
        """[len, 3, H, W] uint8 view of the occupied slots."""
        return self._images[: self._size]

    @property
    def labels(self) -> Tensor:
        return self._labels[: self._size]

    @property
    def features(self) -> Tensor:
        """[len, D] float32 EMA features (rows with seen False are unset)."""
        return self._features[: self._size]

    @property
    def seen(self) -> Tensor:
        return self._seen[: self._size]

    @property
    def lifespan(self) -> Tensor:
        """[len] long: 1 for entries inserted by the latest insert, +1 for every insert since."""
        return self.steps - self._birth[: self._size] + 1

    @property
    def uids(self) -> Tensor:
        return self._uid[: self._size]

    @property
    def feature_stamps(self) -> Tensor:
        return self._stamp[: self._size]

    def insert(self, images: Tensor, keys: Sequence[str], labels: Tensor) -> Tensor:
        """Append a stream batch; every entry (old and new) ages by one step.

        Args:
            images: [B, 3, H, W] uint8.
            keys: B sample keys.
            labels: [B] long (kept for logging only).

        Returns:
            LongTensor [B] of the new entries' slots.

        Raises:
            ValueError: on a shape or dtype mismatch, or when the batch does not fit (resize first).
        """
        b = images.shape[0]
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"images must be uint8 [B, {', '.join(map(str, self.image_shape))}], "
                             f"got {images.dtype} {tuple(images.shape)}")
        if len(keys) != b or labels.shape != (b,):
            raise ValueError(f"got {b} images, {len(keys)} keys and labels of shape {tuple(labels.shape)}")
        if self._size + b > self.capacity + self.max_batch:
            raise ValueError(f"inserting {b} entries into a buffer holding {self._size} exceeds capacity "
                             f"{self.capacity} + max_batch {self.max_batch}; resize first")
        slots = torch.arange(self._size, self._size + b, device=self.device)
        self.steps += 1
        self._images[slots] = images.to(self.device)
        self._labels[slots] = labels.to(self.device, torch.long)
        self._birth[slots] = self.steps
        self._seen[slots] = False
        self._stamp[slots] = -1
        self._uid[slots] = torch.arange(self.inserted, self.inserted + b, device=self.device)
        self.keys.extend(str(k) for k in keys)
        self._size += b
        self.inserted += b
        return slots

    def sample(self, n: int, generator: torch.Generator, exclude: Tensor | None = None) -> Tensor:
        """Draw up to n distinct occupied slots uniformly without replacement, avoiding `exclude`.

        Args:
            n: how many to draw; fewer come back when fewer than n slots are eligible.
            generator: source of randomness (its device is where the draws happen).
            exclude: LongTensor of slots that must not be drawn.

        Returns:
            LongTensor [min(n, eligible)] of slots on the buffer's device, in draw order.
        """
        excluded = self._excluded(exclude)
        eligible = self._size - excluded.numel()
        ranks = _distinct_below(eligible, min(n, eligible), generator)
        # the r-th eligible slot is r plus the number of excluded slots at or below it
        shifted = excluded - torch.arange(excluded.numel(), device=excluded.device)
        slots = ranks + torch.searchsorted(shifted, ranks, right=True)
        return slots.to(self.device)

    def _excluded(self, exclude: Tensor | None) -> Tensor:
        if exclude is None or exclude.numel() == 0:
            return torch.zeros(0, dtype=torch.long)
        excluded = torch.unique(exclude.detach().cpu().long())  # sorted
        if int(excluded[0]) < 0 or int(excluded[-1]) >= self._size:
            raise ValueError(f"exclude holds slots outside [0, {self._size})")
        return excluded

    def update_features(self, indices: Tensor, feats: Tensor, alpha: float = 0.5) -> None:
        """EMA-update the features of entries; alpha is the weight on the old feature.

        First sight sets feature = normalize(feat); afterwards feature = normalize(alpha * old +
        (1 - alpha) * normalize(feat)). Marks the entries seen and stamps them as changed.

        Args:
            indices: [n] long, distinct occupied slots.
            feats: [n, D] new features (any float dtype; normalized here).
            alpha: weight in [0, 1] on the old feature.
        """
        idx = indices.to(self.device, torch.long)
        if feats.shape != (idx.numel(), self.feature_dim):
            raise ValueError(f"feats must be [{idx.numel()}, {self.feature_dim}], got {tuple(feats.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self._size):
            raise ValueError(f"indices outside the occupied slots [0, {self._size})")
        if torch.unique(idx).numel() != idx.numel():
            raise ValueError("indices passed to update_features must be distinct")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        new = F.normalize(feats.detach().to(self.device, torch.float32), dim=1)
        old = self._features[idx]
        ema = F.normalize(alpha * old + (1.0 - alpha) * new, dim=1)
        self._features[idx] = torch.where(self._seen[idx, None], ema, new)
        self._seen[idx] = True
        # a random token, not a counter: a stamp then names one feature value even across a reload
        # of an older state, so a policy's cache can never mistake a rewritten entry for an old one
        self._stamp[idx] = secrets.randbits(62)

    def remove(self, indices: Tensor) -> None:
        """Delete entries; the last entries move into the holes, so slots of moved entries change.

        Args:
            indices: LongTensor of distinct occupied slots.
        """
        gone = torch.unique(indices.detach().to(self.device, torch.long))
        if gone.numel() != indices.numel():
            raise ValueError("indices passed to remove must be distinct")
        if gone.numel() == 0:
            return
        if int(gone[0]) < 0 or int(gone[-1]) >= self._size:
            raise ValueError(f"indices outside the occupied slots [0, {self._size})")
        new_size = self._size - gone.numel()
        holes = gone[gone < new_size]
        tail = torch.arange(new_size, self._size, device=self.device)
        movers = tail[~torch.isin(tail, gone)]  # survivors beyond the new end, as many as holes
        for name in _TENSORS:
            t = getattr(self, "_" + name)
            t[holes] = t[movers]
        for hole, mover in zip(holes.tolist(), movers.tolist()):
            self.keys[hole] = self.keys[mover]
        del self.keys[new_size:]
        self._size = new_size

    def state_dict(self) -> dict:
        """Plain tensors, ints and lists (loadable with torch.load(weights_only=True))."""
        state = {name: getattr(self, "_" + name)[: self._size].cpu().clone() for name in _TENSORS}
        state.update(keys=list(self.keys), steps=self.steps, inserted=self.inserted, protect_new=self.protect_new,
                     capacity=self.capacity, max_batch=self.max_batch, feature_dim=self.feature_dim,
                     image_shape=list(self.image_shape))
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict` taken from a buffer with the same capacity, feature dim and image shape."""
        layout = (state["capacity"], state["feature_dim"], tuple(state["image_shape"]))
        mine = (self.capacity, self.feature_dim, self.image_shape)
        if layout != mine:
            raise ValueError(f"buffer state has (capacity, feature_dim, image_shape) = {layout}, "
                             f"this buffer {mine}")
        saved_protect = state.get("protect_new", 0)  # states saved before the key existed had none
        if saved_protect != self.protect_new:
            raise ValueError(f"buffer state was saved with buffer.protect_new={saved_protect}, "
                             f"this buffer has {self.protect_new}")
        size = len(state["keys"])
        if size > self.capacity + self.max_batch:
            raise ValueError(f"buffer state holds {size} entries, "
                             f"more than {self.capacity} + {self.max_batch}")
        for name in _TENSORS:
            getattr(self, "_" + name)[:size] = state[name].to(self.device)
        self._stamp[size:] = -1
        self._seen[size:] = False
        self.keys = list(state["keys"])
        self._size = size
        self.steps, self.inserted = state["steps"], state["inserted"]


def _distinct_below(high: int, n: int, generator: torch.Generator) -> Tensor:
    """n distinct integers drawn uniformly from [0, high) in draw order, in O(n) expected time."""
    if n <= 0:
        return torch.zeros(0, dtype=torch.long)
    if 4 * n >= high:  # dense: a permutation is as cheap as rejection
        return torch.randperm(high, generator=generator, device=generator.device)[:n].cpu()
    drawn = torch.zeros(0, dtype=torch.long)
    while drawn.numel() < n:
        size = (2 * (n - drawn.numel()) + 8,)
        more = torch.randint(high, size, generator=generator, device=generator.device).cpu()
        drawn = _first_occurrences(torch.cat([drawn, more]))
    return drawn[:n]


def _first_occurrences(values: Tensor) -> Tensor:
    # sequential draws with repeats rejected: keep each value where it first appeared, in order
    uniq, inverse = torch.unique(values, return_inverse=True)
    first = torch.full((uniq.numel(),), values.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(values.numel()), reduce="amin")
    return values[torch.sort(first).values]
