"""Cross-key rules for a resolved RunConfig; each failure names the key (exit code 2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamssl.errors import ConfigError

if TYPE_CHECKING:
    from streamssl.config import RunConfig

STREAM_KINDS = ("iid", "seq", "seq-bl", "seq-im", "custom")
SCHEDULES = ("accv", "minred")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(config: RunConfig) -> None:
    """Reject configs that would fail (or silently misbehave) later, before any work starts."""
    from streamssl.buffers import POLICIES
    from streamssl.methods import METHODS

    learner, buffer, ev = config.learner, config.buffer, config.eval
    _require(config.stream.kind in STREAM_KINDS, f"stream.kind: unknown kind {config.stream.kind!r}")
    _require(learner.k >= 1, f"learner.k: must be >= 1, got {learner.k}")
    _require(learner.stream_batch >= 1, f"learner.stream_batch: must be >= 1, got {learner.stream_batch}")
    _require(learner.lr > 0, f"learner.lr: must be > 0, got {learner.lr}")
    _require(learner.schedule in SCHEDULES, f"learner.schedule: one of {SCHEDULES}, got {learner.schedule!r}")
    _require(learner.lr_schedule in ("constant", "cosine"),
             f"learner.lr_schedule: constant or cosine, got {learner.lr_schedule!r}")
    for key in ("bf16", "channels_last"):
        value = getattr(learner, key)
        _require(value in ("auto", True, False), f"learner.{key}: auto, true or false, got {value!r}")
    _require(learner.replay or learner.schedule == "accv",
             "learner.replay: false needs learner.schedule accv (the minred schedule trains from the buffer only)")
    _require(not getattr(METHODS[config.method_name], "needs_stream_rows", False) or learner.schedule == "accv",
             f"learner.schedule: method {config.method_name!r} needs the accv schedule, got {learner.schedule!r}")
    _require(buffer.policy in POLICIES, f"buffer.policy: unknown policy {buffer.policy!r} "
             f"(known: {', '.join(sorted(POLICIES))})")
    _require(buffer.size >= learner.stream_batch,
             f"buffer.size: must be >= learner.stream_batch ({learner.stream_batch}), got {buffer.size}")
    _require(0.0 <= buffer.ema_alpha < 1.0, f"buffer.ema_alpha: must be in [0, 1), got {buffer.ema_alpha}")
    check_protect_new(config)
    _require(ev.bn in ("running", "recalibrate"), f"eval.bn: running or recalibrate, got {ev.bn!r}")
    _require(isinstance(ev.linear, bool) or ev.linear in ("end", "points", "off"),
             f"eval.linear: end, points or off, got {ev.linear!r}")
    _require(ev.linear_epochs >= 1 and ev.linear_batch_size >= 1 and ev.linear_lr > 0 and ev.linear_weight_decay >= 0,
             "eval.linear_*: need linear_epochs, linear_batch_size >= 1, linear_lr > 0, linear_weight_decay >= 0")
    _require(ev.knn_k >= 1, f"eval.knn_k: must be >= 1, got {ev.knn_k}")
    _require(ev.knn_protocol in ("scale", "cosine"), f"eval.knn_protocol: scale or cosine, got {ev.knn_protocol!r}")
    _require(ev.points is None or all(isinstance(p, (int, float)) and 0 <= p <= 1 for p in ev.points),
             f"eval.points: fractions in [0, 1], got {ev.points!r}")
    validate_eval_subsets(config)
    _require(config.scaling.num_workers >= 1, f"scaling.num_workers: must be >= 1, got {config.scaling.num_workers}")
    dd, ck = config.dedup, config.checkpoint
    _require(dd.every >= 0, f"dedup.every: must be >= 0, got {dd.every}")
    _require(-1.0 <= dd.threshold <= 1.0, f"dedup.threshold: a cosine in [-1, 1], got {dd.threshold}")
    _require(0.0 <= dd.max_fraction < 1.0, f"dedup.max_fraction: must be in [0, 1), got {dd.max_fraction}")
    _require(ck.every >= 0 and ck.keep >= 1 and ck.max_failures >= -1,
             f"checkpoint: every >= 0, keep >= 1, max_failures >= -1; got {ck}")
    config.method_params().validate()


def validate_eval_subsets(config: RunConfig) -> None:
    """The labelled subsets' sizes: memory and test at least 1 image, validation 0 (off) or more."""
    ev = config.eval
    for key in ("memory_samples", "test_samples", "val_samples"):
        value, low = getattr(ev, key), 0 if key == "val_samples" else 1
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= low,
                 f"eval.{key}: must be an integer >= {low}, got {value!r}")


def check_protect_new(config: RunConfig) -> None:
    """buffer.protect_new: protected entries (up to protect_new x stream_batch) must fit in the buffer."""
    protect, b, size = config.buffer.protect_new, config.learner.stream_batch, config.buffer.size
    _require(protect >= 0, f"buffer.protect_new: must be >= 0, got {protect}")
    _require(protect * b <= size, f"buffer.protect_new: {protect} x learner.stream_batch ({b}) protected samples "
             f"exceed buffer.size ({size})")
