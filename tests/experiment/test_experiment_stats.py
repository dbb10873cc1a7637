"""The experiment statistics against hand computation (closed forms for 2 degrees of freedom)."""

import math

import pytest

from streamssl.experiment import stats

# Student t with 2 degrees of freedom has CDF 1/2 + t / (2 sqrt(2 + t^2)), so its 97.5% quantile
# solves t / sqrt(2 + t^2) = 0.95: t = 0.95 sqrt(2 / (1 - 0.95^2)) = 4.3027
T_975_DF2 = 0.95 * math.sqrt(2 / (1 - 0.95 ** 2))


def test_t_interval_of_three_values():
    interval = stats.t_interval([1.0, 2.0, 3.0])  # mean 2, sample std 1
    half = T_975_DF2 * 1.0 / math.sqrt(3)
    assert T_975_DF2 == pytest.approx(4.302652729749464, rel=1e-12)
    assert (interval.n, interval.mean, interval.std) == (3, 2.0, 1.0)
    assert interval.low == pytest.approx(2 - half, rel=1e-12)
    assert interval.high == pytest.approx(2 + half, rel=1e-12)
    assert interval.half_width == pytest.approx(half, rel=1e-12)


def test_t_interval_skips_missing_values_and_is_undefined_below_two():
    assert stats.t_interval([None, 1.0, float("nan"), 2.0, 3.0]) == stats.t_interval([1.0, 2.0, 3.0])
    one = stats.t_interval([float("nan"), 0.7])
    assert one.n == 1 and one.mean == 0.7
    assert all(math.isnan(v) for v in (one.std, one.low, one.high))
    none = stats.t_interval([])
    assert none.n == 0 and all(math.isnan(v) for v in (none.mean, none.std, none.low, none.high))


def test_paired_comparison_by_seed():
    # differences by seed: 1, 2, 3 (seed 3 lacks a reference value, seed 4 is NaN: both unpaired)
    a = {0: 3.0, 1: 5.0, 2: 7.0, 3: 9.0, 4: float("nan")}
    b = {2: 4.0, 0: 2.0, 1: 3.0, 4: 1.0}
    c = stats.compare(a, b)
    t = 2.0 / (1.0 / math.sqrt(3))  # mean difference over its standard error
    p_two_sided = 1 - t / math.sqrt(2 + t ** 2)  # 2 * (1 - CDF(t)) for 2 degrees of freedom
    assert c.n_pairs == 3 and c.mean_diff == pytest.approx(2.0)
    assert c.ci_low == pytest.approx(2 - T_975_DF2 / math.sqrt(3))
    assert c.ci_high == pytest.approx(2 + T_975_DF2 / math.sqrt(3))
    assert c.p_value == pytest.approx(p_two_sided, rel=1e-9)
    assert p_two_sided == pytest.approx(0.0742, abs=1e-4)
    assert math.isnan(c.wilcoxon_p)  # fewer than 6 pairs
    assert not c.significant()


def test_wilcoxon_from_six_pairs():
    # 6 positive differences of distinct sizes: the exact two-sided signed-rank p is 2 / 2^6
    a = {seed: 10.0 + seed + 1 for seed in range(6)}
    b = {seed: 10.0 for seed in range(6)}
    c = stats.compare(a, b)
    assert c.n_pairs == 6 and c.wilcoxon_p == pytest.approx(2 / 64)
    assert math.isnan(stats.compare({k: a[k] for k in range(5)}, b).wilcoxon_p)
    assert c.significant()  # paired t on differences 1..6: t = 3.5 / (1.8708 / sqrt 6) = 4.58


def test_no_variation_has_no_p_value():
    same = stats.compare({0: 1.0, 1: 2.0}, {0: 0.0, 1: 1.0})  # both differences are 1
    assert same.mean_diff == 1.0 and math.isnan(same.p_value) and not same.significant()
    single = stats.compare({0: 1.0}, {0: 0.5})
    assert single.n_pairs == 1 and single.mean_diff == 0.5 and math.isnan(single.ci_low)
    empty = stats.compare({}, {0: 1.0})
    assert empty.n_pairs == 0 and math.isnan(empty.mean_diff)
