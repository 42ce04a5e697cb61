"""actsearch.stats: Student-t summaries, paired comparisons and verdicts over seeds."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats as st

from actsearch import stats

# --- summary ----------------------------------------------------------------------------------

# Hand-computed: [1, 2, 3, 4] has mean 2.5, s = sqrt(5/3) = 1.2909944, s/sqrt(4) = 0.6454972;
# t_{0.975,3} = 3.1824463 and t_{0.995,3} = 5.8409093 (printed t tables).
HAND_SUMMARY = [
  ([1, 2, 3, 4], 0.95, 2.5, 1.2909944487, 2.0542602567),
  ([1, 2, 3, 4], 0.99, 2.5, 1.2909944487, 3.7702907472),
  ([2, 4], 0.95, 3.0, math.sqrt(2.0), 12.7062047362),  # s / sqrt(2) = 1, t_{0.975,1}
  ([5, 5, 5], 0.95, 5.0, 0.0, 0.0),
]


@pytest.mark.parametrize("values,confidence,mean,std,half", HAND_SUMMARY)
def test_summary_hand_values(values, confidence, mean, std, half):
  s = stats.summary(values, confidence)
  assert s["n"] == len(values)
  assert s["mean"] == pytest.approx(mean, rel=1e-9)
  assert s["std"] == pytest.approx(std, rel=1e-9, abs=1e-12)
  assert s["half_width"] == pytest.approx(half, rel=1e-8, abs=1e-12)
  assert s["ci_low"] == pytest.approx(mean - half, rel=1e-8, abs=1e-12)
  assert s["ci_high"] == pytest.approx(mean + half, rel=1e-8, abs=1e-12)


def test_summary_default_confidence_is_95():
  assert stats.summary([1, 2, 3, 4])["half_width"] == pytest.approx(2.0542602567, rel=1e-8)


@pytest.mark.parametrize("seed,n,confidence", [(0, 3, 0.95), (1, 5, 0.9), (2, 10, 0.99),
                                               (3, 30, 0.8)])
def test_summary_matches_scipy_t_interval(seed, n, confidence):
  x = np.random.default_rng(seed).normal(loc=0.7, scale=0.05, size=n)
  s = stats.summary(x.tolist(), confidence)
  low, high = st.t.interval(confidence, n - 1, loc=np.mean(x), scale=st.sem(x))
  assert s["mean"] == pytest.approx(np.mean(x), rel=1e-12)
  assert s["std"] == pytest.approx(np.std(x, ddof=1), rel=1e-12)
  assert s["ci_low"] == pytest.approx(low, rel=1e-10)
  assert s["ci_high"] == pytest.approx(high, rel=1e-10)
  assert s["half_width"] == pytest.approx((high - low) / 2, rel=1e-10)


def test_summary_single_value_has_no_interval():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    s = stats.summary([0.25])
  assert s["n"] == 1 and s["mean"] == 0.25 and s["std"] == 0.0
  assert math.isnan(s["ci_low"]) and math.isnan(s["ci_high"]) and math.isnan(s["half_width"])


def test_summary_returns_plain_python_numbers():
  s = stats.summary(np.array([1.0, 2.0, 4.0], dtype=np.float32))
  assert set(s) == {"n", "mean", "std", "ci_low", "ci_high", "half_width"}
  assert type(s["n"]) is int
  assert all(type(s[k]) is float for k in s if k != "n")


@pytest.mark.parametrize("values", [[], [1.0, float("nan")], [float("inf")], [1.0, -np.inf],
                                    [[1.0, 2.0], [3.0, 4.0]]])
def test_summary_rejects_bad_values(values):
  with pytest.raises(ValueError):
    stats.summary(values)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_summary_rejects_bad_confidence(confidence):
  with pytest.raises(ValueError):
    stats.summary([1.0, 2.0, 3.0], confidence)


# --- paired -----------------------------------------------------------------------------------


def test_paired_hand_example():
  # d = a - b = [2, 3, 4]: mean 3, s_d = 1, t = 3 / (1 / sqrt 3) = 3 sqrt 3 on 2 dof. For 2 dof
  # the t CDF is closed-form, F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so p = 1 - t / sqrt(2 + t^2)
  # and the 97.5% quantile solves t / sqrt(2 + t^2) = 0.95: t = sqrt(2 * 0.95^2 / (1 - 0.95^2)).
  r = stats.paired([3, 5, 7], [1, 2, 3])
  t = 3 * math.sqrt(3)
  half = math.sqrt(2 * 0.95**2 / (1 - 0.95**2)) / math.sqrt(3)
  assert r["n"] == 3
  assert r["mean_diff"] == pytest.approx(3.0, rel=1e-12)
  assert r["std_diff"] == pytest.approx(1.0, rel=1e-12)
  assert r["ci_low"] == pytest.approx(3.0 - half, rel=1e-10)
  assert r["ci_high"] == pytest.approx(3.0 + half, rel=1e-10)
  assert r["p_value"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-10)


def test_paired_direction_is_a_minus_b():
  r = stats.paired([1, 2, 3], [3, 5, 7])
  assert r["mean_diff"] == pytest.approx(-3.0)
  assert r["ci_high"] < 0


@pytest.mark.parametrize("seed,n,confidence", [(0, 2, 0.95), (1, 4, 0.9), (2, 8, 0.95),
                                               (3, 20, 0.99)])
def test_paired_matches_scipy(seed, n, confidence):
  rng = np.random.default_rng(seed)
  b = rng.normal(0.8, 0.05, size=n)
  a = b + rng.normal(0.01, 0.02, size=n)
  r = stats.paired(a.tolist(), b.tolist(), confidence)
  d = a - b
  low, high = st.t.interval(confidence, n - 1, loc=np.mean(d), scale=st.sem(d))
  assert r["n"] == n
  assert r["mean_diff"] == pytest.approx(np.mean(d), rel=1e-12)
  assert r["std_diff"] == pytest.approx(np.std(d, ddof=1), rel=1e-12)
  assert r["ci_low"] == pytest.approx(low, rel=1e-10)
  assert r["ci_high"] == pytest.approx(high, rel=1e-10)
  assert r["p_value"] == pytest.approx(st.ttest_rel(a, b).pvalue, rel=1e-10)


def test_paired_is_not_an_unpaired_test():
  # A small consistent gain on top of a large seed-to-seed spread: paired, it is significant;
  # an unpaired (Welch) test on the same numbers would not be.
  b = [0.50, 0.60, 0.70, 0.80, 0.90]
  a = [x + 0.01 + e for x, e in zip(b, [0.001, -0.001, 0.002, 0.0, -0.002])]
  r = stats.paired(a, b)
  assert r["p_value"] < 1e-3
  assert st.ttest_ind(a, b, equal_var=False).pvalue > 0.5


@pytest.mark.parametrize("a,b,mean", [
  ([1.5, 2.5, 4.0], [1.25, 2.25, 3.75], 0.25),
  ([0.1, 0.1, 0.1], [0.0, 0.0, 0.0], 0.1),  # np.mean gives 0.10000000000000002 here
  ([0.5, 0.5], [0.75, 0.75], -0.25),
])
def test_paired_identical_differences_are_degenerate_without_warnings(a, b, mean):
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    r = stats.paired(a, b)
  assert r["mean_diff"] == mean
  assert r["std_diff"] == 0.0
  assert r["ci_low"] == mean and r["ci_high"] == mean
  assert r["p_value"] == 0.0


def test_paired_equal_inputs_give_p_one_without_warnings():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    r = stats.paired([0.3, 0.7, 0.9], [0.3, 0.7, 0.9])
  assert r == {"n": 3, "mean_diff": 0.0, "std_diff": 0.0, "ci_low": 0.0, "ci_high": 0.0,
               "p_value": 1.0}


def test_paired_single_pair_has_no_interval_or_p_value():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    r = stats.paired([0.9], [0.7])
  assert r["n"] == 1
  assert r["mean_diff"] == pytest.approx(0.2)
  assert r["std_diff"] == 0.0
  assert math.isnan(r["ci_low"]) and math.isnan(r["ci_high"]) and math.isnan(r["p_value"])


@pytest.mark.parametrize("a,b", [
  ([1.0, 2.0], [1.0]),
  ([1.0], [1.0, 2.0]),
  ([], []),
  ([1.0, float("nan")], [1.0, 2.0]),
  ([1.0, 2.0], [float("inf"), 2.0]),
])
def test_paired_rejects_bad_input(a, b):
  with pytest.raises(ValueError):
    stats.paired(a, b)


def test_paired_rejects_bad_confidence():
  with pytest.raises(ValueError):
    stats.paired([1.0, 2.0, 4.0], [0.0, 0.0, 0.0], confidence=1.0)


# --- verdict ----------------------------------------------------------------------------------

BASE = [0.80, 0.82, 0.78, 0.81, 0.79]
UP = [x + d for x, d in zip(BASE, [0.020, 0.030, 0.025, 0.020, 0.030])]  # clearly higher
DOWN = [x - d for x, d in zip(BASE, [0.020, 0.030, 0.025, 0.020, 0.030])]  # clearly lower
NOISY = [x + d for x, d in zip(BASE, [0.020, -0.030, 0.010, -0.015, 0.005])]  # CI spans 0


@pytest.mark.parametrize("found,base,higher,expected", [
  (UP, BASE, True, "wins"),
  (DOWN, BASE, True, "loses"),
  (NOISY, BASE, True, "ties"),
  (BASE, BASE, True, "ties"),
  (UP, BASE, False, "loses"),  # e.g. a loss metric: higher is worse
  (DOWN, BASE, False, "wins"),
  (NOISY, BASE, False, "ties"),
  (BASE, BASE, False, "ties"),
  # identical differences: a point interval, judged by its sign
  ([1.5, 2.5], [1.25, 2.25], True, "wins"),
  ([1.5, 2.5], [1.25, 2.25], False, "loses"),
  # a single seed: no interval, the sign of the difference decides
  ([0.9], [0.8], True, "wins"),
  ([0.7], [0.8], True, "loses"),
  ([0.8], [0.8], True, "ties"),
  ([0.9], [0.8], False, "loses"),
  ([0.7], [0.8], False, "wins"),
  ([0.8], [0.8], False, "ties"),
])
def test_verdict(found, base, higher, expected):
  assert stats.verdict(found, base, higher_is_better=higher) == expected


def test_verdict_default_is_higher_is_better():
  assert stats.verdict(UP, BASE) == "wins"
  assert stats.verdict(DOWN, BASE) == "loses"


def test_verdict_depends_on_confidence():
  # Two seeds, d = [0.01, 0.03]: mean 0.02, s_d = 0.01414, t_{0.8,1} * s_d / sqrt 2 = 0.01376 < 0.02
  # but t_{0.975,1} * s_d / sqrt 2 = 0.127 > 0.02.
  found, base = [0.51, 0.63], [0.5, 0.6]
  assert stats.verdict(found, base, confidence=0.6) == "wins"
  assert stats.verdict(found, base, confidence=0.95) == "ties"


def test_verdict_uses_pairing():
  # A consistent small gain hidden in a large seed spread: paired it wins, unpaired it would tie.
  b = [0.50, 0.60, 0.70, 0.80, 0.90]
  a = [x + 0.01 + e for x, e in zip(b, [0.001, -0.001, 0.002, 0.0, -0.002])]
  assert stats.verdict(a, b) == "wins"
  assert stats.verdict(b, a) == "loses"


def test_verdict_rejects_mismatched_lengths():
  with pytest.raises(ValueError):
    stats.verdict([0.9, 0.8], [0.8])


# --- best_variant -----------------------------------------------------------------------------


@pytest.mark.parametrize("results,higher,expected", [
  ({"relu": [0.8, 0.82], "gelu": [0.85, 0.84], "tanh": [0.7, 0.75]}, True, "gelu"),
  ({"relu": [0.8, 0.82], "gelu": [0.85, 0.84], "tanh": [0.7, 0.75]}, False, "tanh"),
  # means decide, not maxima: "b" has the single highest value but the lower mean
  ({"a": [0.6, 0.6], "b": [0.9, 0.2]}, True, "a"),
  ({"a": [0.6, 0.6], "b": [0.9, 0.2]}, False, "b"),
  # exact ties go to the smallest name, whatever the insertion order
  ({"zeta": [0.5, 0.7], "alpha": [0.6, 0.6], "mid": [0.1]}, True, "alpha"),
  ({"zeta": [0.5], "alpha": [0.5], "mid": [0.9]}, False, "alpha"),
  ({"only": [0.3]}, True, "only"),
])
def test_best_variant(results, higher, expected):
  assert stats.best_variant(results, higher_is_better=higher) == expected


def test_best_variant_default_is_higher_is_better():
  assert stats.best_variant({"x": [1.0], "y": [2.0]}) == "y"


@pytest.mark.parametrize("results", [{}, {"a": [1.0], "b": []}, {"a": [float("nan")]}])
def test_best_variant_rejects_bad_input(results):
  with pytest.raises(ValueError):
    stats.best_variant(results)
