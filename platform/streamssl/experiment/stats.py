"""Statistics over seeds, as pure functions of plain numbers (no files, no Ray).

Intervals are two-sided Student-t intervals (scipy.stats.t) of the mean over independent seeds;
comparisons pair two methods' values by seed (same seed: same initial backbone, crops, stream
order and evaluation subsets), so the paired test removes the variance the two runs share.
NaN stands for "not defined" (fewer than two values, or no variation to test); writers show it
as an empty cell, never as a made-up number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
WILCOXON_MIN_PAIRS = 6  # below 6 pairs the exact signed-rank test cannot reach p < 0.05 two-sided
NAN = float("nan")


@dataclass(frozen=True)
class Interval:
    """Mean of n values with its sample std (ddof=1) and t-interval; NaN where undefined."""

    n: int
    mean: float
    std: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Comparison:
    """Seed-paired difference a - b: mean, t-interval, paired t-test and (n >= 6) Wilcoxon p-values."""

    n_pairs: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    wilcoxon_p: float

    def significant(self, alpha: float = 1 - CONFIDENCE) -> bool:
        return bool(np.isfinite(self.p_value) and self.p_value < alpha)


def finite(values) -> np.ndarray:
    """The finite entries of `values` as float64 (None and NaN dropped)."""
    array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def t_interval(values, confidence: float = CONFIDENCE) -> Interval:
    """mean ± t_{(1+c)/2, n-1} * std / sqrt(n) over the finite values.

    n = 0: everything NaN; n = 1: the mean alone (std and interval undefined, NaN).
    """
    data = finite(values)
    n = len(data)
    if n == 0:
        return Interval(0, NAN, NAN, NAN, NAN)
    mean = float(data.mean())
    if n == 1:
        return Interval(1, mean, NAN, NAN, NAN)
    std = float(data.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half)


def paired(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray]:
    """Values of a and b (dicts seed -> value) for the seeds where both are finite, in seed order."""
    seeds = sorted(s for s in a.keys() & b.keys() if _is_finite(a[s]) and _is_finite(b[s]))
    return (np.array([a[s] for s in seeds], dtype=np.float64), np.array([b[s] for s in seeds], dtype=np.float64))


def _is_finite(value) -> bool:
    return value is not None and bool(np.isfinite(value))


def compare(a: dict, b: dict, confidence: float = CONFIDENCE) -> Comparison:
    """Seed-paired comparison of a against b (dicts seed -> value).

    p_value: scipy.stats.ttest_rel(a, b) (NaN with fewer than 2 pairs or identical differences);
    wilcoxon_p: scipy.stats.wilcoxon(a - b) with at least WILCOXON_MIN_PAIRS pairs, else NaN.
    """
    x, y = paired(a, b)
    diff = x - y
    interval = t_interval(diff, confidence)
    return Comparison(len(diff), interval.mean, interval.low, interval.high, _ttest_p(x, y, diff),
                      _wilcoxon_p(diff))


def _ttest_p(x: np.ndarray, y: np.ndarray, diff: np.ndarray) -> float:
    if len(diff) < 2 or np.all(diff == diff[0]):  # no variation: the t statistic is undefined
        return NAN
    return float(stats.ttest_rel(x, y).pvalue)


def _wilcoxon_p(diff: np.ndarray) -> float:
    if len(diff) < WILCOXON_MIN_PAIRS or np.all(diff == 0):
        return NAN
    return float(stats.wilcoxon(diff).pvalue)
