"""Stream plans: the SCALE stream protocol (docs/method-spec.md §3) as one vectorized function.

A plan is an int64 array of row indices into a dataset's label array, in stream order. It is a
pure function of (labels, arguments, seed): every random draw comes from a PCG64 generator seeded
from `(seed, stage)`, so the same inputs give the same plan, byte for byte, on any machine, and the
stages are independent (a `seq-bl` plan swaps samples of exactly the `seq` plan of the same seed).

Cost is a few global sorts of the label array (no Python loop per sample or per class), which
plans ImageNet-21K (13.2M samples, 21,841 classes) in seconds.
"""

from __future__ import annotations

import re

import numpy as np

from streamssl.errors import ConfigError

KINDS = ("iid", "seq", "seq-bl", "seq-im", "custom")
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# what `prepare` writes to name a sample, its shard and format: identities, not orders
_IDENTIFIER_COLUMNS = frozenset({"key", "shard", "ext"})

# SCALE's seq-im patterns: which segments get n/2 (1) rather than n (0), docs/method-spec.md §3.3
_HALF_PATTERNS = {
    10: np.array([1, 0, 1, 0, 1, 1, 0, 1, 1, 0], dtype=bool),
    20: np.isin(np.arange(20), [0, 4, 9, 14, 19]),
}
_HALF_FRACTION = 0.4  # other segment counts: a seeded random 40% get n/2

# one independent random stream per stage, so stages don't shift each other's draws
_CLASS_ORDER, _WITHIN_CLASS, _HALF_SEGMENTS, _SEGMENT_MIX, _BLEND, _IID = range(6)


def rng_for(seed: int, stage: int) -> np.random.Generator:
    """The PCG64 generator of one planning stage (platform-independent by construction)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), stage])))


def plan_stream(labels, kind: str, *, samples_per_class=None, blend_ratio: float = 0.5,
                class_order=None, seed: int = 0, classes_per_segment: int = 1,
                order_by=None) -> np.ndarray:
    """Order a labelled dataset into a stream.

    Args:
        labels: (N,) integer class of every sample.
        kind: `iid` (n random samples per class, uniformly shuffled), `seq` (segments one after
            another in class order, shuffled within a segment), `seq-bl` (`seq` with SCALE's
            blurred boundaries), `seq-im` (`seq` with imbalanced per-class counts) or `custom`
            (samples sorted by `order_by`, ties broken by class order, then at random).
        samples_per_class: None (all), an int n, or one int per class in class order (or one per
            segment with `classes_per_segment` > 1). Counts are capped at what exists. For
            `seq-im` an int (default: the smallest class count) is the larger count n, and
            SCALE's pattern decides which segments get n // 2.
        blend_ratio: `seq-bl` mixes int(min(n_left, n_right) * blend_ratio / 2) samples on each
            side of every boundary; in [0, 1].
        class_order: None or "natural" (ascending label), "random" (seeded), or a sequence of
            class ids (a subset drops the other classes).
        seed: seeds every random draw.
        classes_per_segment: K consecutive classes (in class order) form one segment, mixed
            within it (ImageNet-100 as 10 tasks of 10 classes).
        order_by: (N,) numeric sort key for `custom` (a manifest column such as a difficulty
            score; a per-class value orders whole classes), or a sequence of such keys, the
            first deciding and each later one breaking the ties left by those before it
            (`order_keys` builds them from manifest columns).

    Returns:
        (L,) int64 indices into `labels`, in stream order.

    Raises:
        ConfigError: unknown kind, bad counts, class order, blend ratio or sort key; the message
            starts with the argument's name (`blend_ratio: ...`), which callers map to their own
            (the `stream` command's flags, a pipeline's `stream.*` keys; see `errors.renamed`).
    """
    labels = np.asarray(labels)
    if kind not in KINDS:
        raise ConfigError(f"kind: unknown stream kind {kind!r} (choose from {', '.join(KINDS)})")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError("labels: need a 1-d integer array")
    if not 0.0 <= blend_ratio <= 1.0:
        raise ConfigError(f"blend_ratio: must be in [0, 1], got {blend_ratio}")
    if isinstance(classes_per_segment, bool) or int(classes_per_segment) < 1:
        raise ConfigError(f"classes_per_segment: must be >= 1, got {classes_per_segment}")
    if labels.shape[0] == 0:
        raise ConfigError("labels: the dataset is empty")
    classes_per_segment = int(classes_per_segment)
    classes, inverse = _class_index(labels)
    order = _class_order(classes, class_order, seed)  # (C',) indices into classes, stream order
    rank = np.full(len(classes), -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    sample_rank = rank[inverse]  # (N,) position of each sample's class in the order, -1: dropped
    have = np.bincount(sample_rank[sample_rank >= 0], minlength=len(order))
    segment_of = np.arange(len(order)) // classes_per_segment  # (C',) class -> segment
    want = _class_counts(kind, samples_per_class, have, segment_of, seed)
    chosen = _choose(sample_rank, want, seed)  # grouped by class, shuffled within it
    if kind == "iid":
        return chosen[rng_for(seed, _IID).permutation(len(chosen))]
    if kind == "custom":
        return _custom(chosen, sample_rank, order_by, labels.shape[0], seed)
    plan = chosen
    if classes_per_segment > 1:  # one-class segments are already shuffled by _choose
        key = rng_for(seed, _SEGMENT_MIX).permutation(len(chosen))
        plan = chosen[np.lexsort((key, segment_of[sample_rank[chosen]]))]
    if kind == "seq-bl":
        sizes = np.bincount(segment_of[sample_rank[plan]], minlength=segment_of[-1] + 1)
        plan = blend_boundaries(plan, sizes, blend_ratio, rng_for(seed, _BLEND))
    return plan


def _class_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes (C,) sorted, inverse (N,) index into classes); a lookup table, not a sort,
    for the usual small non-negative ids (np.unique's sort costs 10x more at 13M labels)."""
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high > 4 * len(labels) + (1 << 20):
        return np.unique(labels, return_inverse=True)
    present = np.bincount(labels) > 0
    lookup = np.cumsum(present) - 1
    return np.flatnonzero(present), lookup[labels]


def _class_order(classes: np.ndarray, class_order, seed: int) -> np.ndarray:
    if class_order is None or (isinstance(class_order, str) and class_order == "natural"):
        return np.arange(len(classes))
    if isinstance(class_order, str):
        if class_order != "random":
            raise ConfigError(f"class_order: {class_order!r} is not natural, random or a list")
        return rng_for(seed, _CLASS_ORDER).permutation(len(classes))
    wanted = np.asarray(class_order)
    if wanted.ndim != 1 or len(wanted) == 0 or not np.issubdtype(wanted.dtype, np.integer):
        raise ConfigError("class_order: need a non-empty list of integer class ids")
    if len(np.unique(wanted)) != len(wanted):
        raise ConfigError("class_order: a class id appears twice")
    pos = np.searchsorted(classes, wanted).clip(max=len(classes) - 1)
    missing = wanted[classes[pos] != wanted]
    if len(missing):
        raise ConfigError(f"class_order: class {int(missing[0])} has no samples")
    return pos


def _class_counts(kind: str, samples_per_class, have: np.ndarray, segment_of: np.ndarray,
                  seed: int) -> np.ndarray:
    """(C',) samples to take from each class, capped at `have`."""
    num_classes, num_segments = len(have), int(segment_of[-1]) + 1
    if samples_per_class is None:
        want = have.copy() if kind != "seq-im" else np.full(num_classes, have.min())
    elif np.ndim(samples_per_class) == 0:
        want = np.full(num_classes, _check_count(samples_per_class))
    else:
        counts = np.array([_check_count(n) for n in samples_per_class], dtype=np.int64)
        if len(counts) == num_classes:
            want = counts
        elif len(counts) == num_segments:
            want = counts[segment_of]
        else:
            per_segment = f" or {num_segments} segments" if num_segments != num_classes else ""
            raise ConfigError(f"samples_per_class: {len(counts)} counts for {num_classes} classes"
                              f"{per_segment}")
        if kind == "seq-im":
            return _nonempty(np.minimum(want, have))
    if kind == "seq-im":
        half = _half_segments(num_segments, seed)[segment_of]
        want = np.where(half, want // 2, want)
    return _nonempty(np.minimum(want, have))


def _nonempty(want: np.ndarray) -> np.ndarray:
    if want.sum() == 0:
        raise ConfigError("samples_per_class: the stream would hold no samples")
    return want


def _check_count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"samples_per_class: {n!r} is not a count >= 0")
    return int(n)


def _half_segments(num_segments: int, seed: int) -> np.ndarray:
    if num_segments in _HALF_PATTERNS:
        return _HALF_PATTERNS[num_segments]
    half = np.zeros(num_segments, dtype=bool)
    num_half = int(round(_HALF_FRACTION * num_segments))
    half[rng_for(seed, _HALF_SEGMENTS).choice(num_segments, num_half, replace=False)] = True
    return half


def _choose(sample_rank: np.ndarray, want: np.ndarray, seed: int) -> np.ndarray:
    """Indices of the first want[c] samples of each class after a seeded in-class shuffle.

    One global permutation followed by a stable sort on the class gives every class its own
    uniform shuffle at the cost of one sort (instead of one shuffle per class). Dropped classes
    (rank -1) sort last as rank C; 16-bit keys get numpy's O(N) radix sort.
    """
    num = len(want)
    key = np.where(sample_rank < 0, num, sample_rank)
    key = key.astype(np.uint16 if num < np.iinfo(np.uint16).max else np.uint32)
    perm = rng_for(seed, _WITHIN_CLASS).permutation(len(sample_rank))
    grouped = perm[np.argsort(key[perm], kind="stable")]  # (N,) by class, random inside
    have = np.bincount(key, minlength=num + 1)[:num]
    grouped = grouped[:have.sum()]  # without the dropped classes' samples, which sort last
    starts = np.cumsum(have) - have
    # grouped is sorted by class: the class of row i is a run-length repeat, not a 13M-row gather
    within = np.arange(len(grouped)) - np.repeat(starts, have)
    return grouped[within < np.repeat(want, have)]


def blend_boundaries(plan: np.ndarray, sizes: np.ndarray, blend_ratio: float,
                     rng: np.random.Generator) -> np.ndarray:
    """SCALE's blurred boundaries (docs/method-spec.md §3.2), all boundaries at once.

    At boundary c (segment c starts at s_c), with m = int(min(n_{c-1}, n_c) * blend_ratio / 2),
    positions s_c - 1 - i and s_c + i (i < m) swap with probability p_i = 0.5 - 0.45 * i / m.
    With blend_ratio <= 1 the swap windows of neighbouring boundaries never overlap, so doing
    all boundaries in one vectorized pass equals SCALE's boundary-by-boundary loop.

    Args:
        plan: (L,) stream-ordered indices; not modified.
        sizes: (S,) segment lengths in stream order, summing to L.
        blend_ratio: in [0, 1].
        rng: draws one uniform per candidate swap, boundaries in order.

    Returns:
        (L,) the blended plan.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    m = (np.minimum(sizes[:-1], sizes[1:]) * blend_ratio / 2).astype(np.int64)  # (S-1,)
    starts = np.cumsum(sizes)[:-1]  # s_c for c = 1..S-1
    boundary = np.repeat(np.arange(len(m)), m)  # (P,) one entry per candidate pair
    i = np.arange(len(boundary)) - np.repeat(np.cumsum(m) - m, m)
    p = 0.5 - 0.45 * i / m[boundary]
    swap = rng.random(len(boundary)) < p
    left, right = (starts[boundary] - 1 - i)[swap], (starts[boundary] + i)[swap]
    out = plan.copy()
    out[left], out[right] = plan[right], plan[left]
    return out


def _custom(chosen: np.ndarray, sample_rank: np.ndarray, order_by, n: int, seed: int) -> np.ndarray:
    """`chosen` sorted by the keys (ascending, the first deciding), ties by class order, then by a
    seeded shuffle."""
    if order_by is None:
        raise ConfigError("order_by: the custom kind needs a column to order by")
    keys = [_checked_key(key, n, chosen) for key in (order_by if isinstance(order_by, (list, tuple)) else [order_by])]
    if not keys:
        raise ConfigError("order_by: the custom kind needs a column to order by")
    tie = rng_for(seed, _SEGMENT_MIX).permutation(len(chosen))
    return chosen[np.lexsort((tie, sample_rank[chosen], *reversed(keys)))]  # lexsort: last key first


def _checked_key(key, n: int, chosen: np.ndarray) -> np.ndarray:
    key = np.asarray(key)
    if key.shape != (n,) or not np.issubdtype(key.dtype, np.number):
        raise ConfigError("order_by: need one numeric value per sample")
    if not np.isfinite(key[chosen].astype(np.float64, copy=False)).all():
        raise ConfigError("order_by: the column has missing or infinite values")
    return key[chosen]


def parse_order_by(spec: str) -> tuple[str, bool]:
    """`column` -> (column, False); `-column` -> (column, True): descending (e.g. hard to easy)."""
    column = spec[1:] if spec.startswith("-") else spec
    if not column:
        raise ConfigError(f"order_by: {spec!r} names no column")
    return column, spec.startswith("-")


def parse_order_keys(spec: str) -> list[tuple[str, bool]]:
    """`video,-frame` -> [("video", False), ("frame", True)]: the columns a `custom` stream sorts by,
    the first deciding and each later one breaking the ties left by those before it.

    Raises:
        ConfigError: an empty spec or part, a name that is not a plain column name (letters,
            digits, `_`), or a column named twice (`order_by: ...`).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"order_by: {spec!r} names no column")
    keys = [parse_order_by(part.strip()) for part in spec.split(",")]
    for name, _ in keys:
        if not _PLAIN_NAME.fullmatch(name):
            raise ConfigError(f"order_by: {name!r} is not a column name (letters, digits, _; "
                              "a leading '-' sorts descending, a comma adds a tie-breaking column)")
    names = [name for name, _ in keys]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"order_by: column {twice[0]!r} appears twice in {spec!r}")
    return keys


def order_keys(columns, spec: str, missing_hint: str = "") -> list[np.ndarray]:
    """The sort keys of an order_by spec over a table's columns (`plan_stream(order_by=...)`).

    Numbers and booleans sort by value, datetimes by time, strings lexicographically (ISO-8601
    timestamps sort in time order); `-COLUMN` reverses one key. The dataset's own identifier
    columns (`key`, `shard`, `ext`, `*_name`) are not orders and are refused.

    Args:
        columns: a mapping of column name -> (N,) values (a pandas DataFrame works).
        spec: `COLUMN`, `-COLUMN` or several of them separated by commas.
        missing_hint: appended to the message for an unknown column (where such columns come from).

    Returns:
        One (N,) numeric key per column, in the spec's order.

    Raises:
        ConfigError: a bad spec, an unknown or identifier column, or one of another type (`order_by: ...`).
    """
    keys = []
    for name, descending in parse_order_keys(spec):
        if name not in columns:
            raise ConfigError(f"order_by: unknown column {name!r}" + (f" ({missing_hint})" if missing_hint else ""))
        if name in _IDENTIFIER_COLUMNS or name.endswith("_name"):
            raise ConfigError(f"order_by: {name!r} identifies samples or classes and is not an order; "
                              "join an order column (a time, a frame index) with `streamssl columns`")
        key = sort_key(np.asarray(columns[name]), name)
        keys.append(descending_key(key) if descending else key)
    return keys


def sort_key(values: np.ndarray, name: str = "order_by") -> np.ndarray:
    """A numeric array that sorts like `values`: numbers as they are (booleans as 0/1), datetimes as
    int64 nanoseconds, strings by their rank in sorted order (missing values become NaN, which
    `plan_stream` refuses for the samples a stream takes)."""
    if values.dtype == bool:
        return values.astype(np.int64)
    if np.issubdtype(values.dtype, np.number):
        return values
    if np.issubdtype(values.dtype, np.datetime64):
        stamps = values.astype("datetime64[ns]")
        return np.where(np.isnat(stamps), np.nan, stamps.astype(np.int64).astype(np.float64))
    items = values.tolist()
    present = np.array([isinstance(v, str) for v in items], dtype=bool)
    if not all(isinstance(v, str) or _missing(v) for v in items):
        raise ConfigError(f"order_by: column {name!r} mixes strings with other values")
    ranks = np.full(len(values), np.nan)
    ranks[present] = np.unique(values[present].astype(str), return_inverse=True)[1]
    return ranks


def descending_key(values: np.ndarray) -> np.ndarray:
    """A sort key whose ascending order is `values`' descending order (exact for every dtype:
    integers become int64 before negating, so unsigned ids do not wrap)."""
    if np.issubdtype(values.dtype, np.integer):
        return -values.astype(np.int64)
    return -values.astype(np.float64, copy=False)


def plan_sha256(plan: np.ndarray) -> str:
    """Hex sha256 of the plan's little-endian int64 bytes."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(plan, dtype="<i8").tobytes()).hexdigest()


def _missing(value) -> bool:
    return value is None or isinstance(value, float) and value != value  # NaN is not equal to itself
