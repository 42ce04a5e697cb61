r"""Small-sample statistics for comparing search results over seeds.

All functions are pure (numpy + ``scipy.stats`` only) and return plain Python numbers.

Formulas, for values :math:`x_1, \dots, x_n` and confidence level :math:`c \in (0, 1)`:

* sample mean :math:`\bar x = \frac{1}{n} \sum_i x_i`;
* sample standard deviation (Bessel-corrected, ``ddof=1``)
  :math:`s = \sqrt{\frac{1}{n - 1} \sum_i (x_i - \bar x)^2}`;
* Student-t confidence interval for the mean
  :math:`\bar x \pm t_{(1 + c)/2,\, n - 1} \, s / \sqrt{n}`, where :math:`t_{q,\nu}` is the
  :math:`q`-quantile of Student's t distribution with :math:`\nu` degrees of freedom;
* paired comparison of matched samples :math:`a_i, b_i` (the same seed ``i``): the one-sample
  interval above applied to the differences :math:`d_i = a_i - b_i`, and the two-sided paired
  t-test with statistic :math:`t = \bar d / (s_d / \sqrt{n})` on :math:`n - 1` degrees of
  freedom, :math:`p = 2 \, P(T_{n-1} \ge |t|)`.

Sources: Student (W. S. Gosset), "The probable error of a mean", Biometrika 6(1), 1908;
NIST/SEMATECH e-Handbook of Statistical Methods, section 1.3.5.2 "Confidence Limits for the
Mean" (https://www.itl.nist.gov/div898/handbook/eda/section3/eda352.htm); the paired test is
``scipy.stats.ttest_rel`` (https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.ttest_rel.html).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

__all__ = ["summary", "paired", "verdict", "best_variant"]

_NAN = float("nan")


def _as_values(values: Sequence[float], name: str = "values") -> np.ndarray:
  """``values`` as a 1-D float64 array; ValueError if empty, not 1-D or not all finite."""
  arr = np.asarray(values, dtype=np.float64)
  if arr.ndim != 1:
    raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {arr.shape}")
  if arr.size == 0:
    raise ValueError(f"{name} must not be empty")
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} must be finite, got {arr.tolist()}")
  return arr


def _check_confidence(confidence: float) -> float:
  confidence = float(confidence)
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
  return confidence


def _t_quantile(confidence: float, n: int) -> float:
  r"""The two-sided critical value :math:`t_{(1 + c)/2,\, n - 1}` (``n >= 2``)."""
  from scipy import stats as st  # imported when needed: 1 s that a process may not spend

  return float(st.t.ppf((1.0 + confidence) / 2.0, n - 1))


def summary(values: Sequence[float], confidence: float = 0.95) -> dict:
  r"""Mean, sample standard deviation and Student-t confidence interval of ``values``.

  .. math::

    \bar x = \frac{1}{n} \sum_i x_i, \qquad
    s = \sqrt{\frac{1}{n - 1} \sum_i (x_i - \bar x)^2}, \qquad
    h = t_{(1 + c)/2,\, n - 1} \, \frac{s}{\sqrt{n}}, \qquad
    [\bar x - h,\ \bar x + h].

  With ``n == 1`` the standard deviation is reported as ``0.0`` and, since no interval can be
  estimated from a single value, ``ci_low``, ``ci_high`` and ``half_width`` are ``nan``.

  Args:
    values: the per-seed measurements.
    confidence: the confidence level :math:`c`, strictly between 0 and 1.

  Returns:
    ``{"n", "mean", "std", "ci_low", "ci_high", "half_width"}``.

  Raises:
    ValueError: if ``values`` is empty or contains a non-finite value, or ``confidence`` is
      not in (0, 1).
  """
  x = _as_values(values)
  confidence = _check_confidence(confidence)
  n = int(x.size)
  mean = float(np.mean(x))
  if n < 2:
    return {"n": n, "mean": mean, "std": 0.0, "ci_low": _NAN, "ci_high": _NAN,
            "half_width": _NAN}
  std = float(np.std(x, ddof=1))
  half = _t_quantile(confidence, n) * std / math.sqrt(n)
  return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half,
          "half_width": half}


def paired(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
  r"""Paired comparison of ``a`` and ``b`` over matched seeds: the differences ``a - b``.

  With :math:`d_i = a_i - b_i`:

  .. math::

    \bar d = \frac{1}{n} \sum_i d_i, \qquad
    s_d = \sqrt{\frac{1}{n - 1} \sum_i (d_i - \bar d)^2}, \qquad
    \bar d \pm t_{(1 + c)/2,\, n - 1} \, \frac{s_d}{\sqrt{n}},

  and the two-sided paired t-test (``scipy.stats.ttest_rel``)
  :math:`t = \bar d / (s_d / \sqrt{n})`, :math:`p = 2 \, P(T_{n-1} \ge |t|)`.

  Special cases:

  * all differences identical (:math:`s_d = 0`, ``n >= 2``): ``mean_diff`` is that common
    difference exactly, ``std_diff`` is ``0.0``, the interval is ``[mean_diff, mean_diff]`` and
    ``p_value`` is ``0.0`` if ``mean_diff != 0`` else ``1.0`` (scipy would return ``nan`` and
    warn);
  * ``n == 1``: ``std_diff`` is ``0.0`` and ``ci_low``, ``ci_high``, ``p_value`` are ``nan``.

  Args:
    a, b: matched measurements; ``a[i]`` and ``b[i]`` come from the same seed.
    confidence: the confidence level :math:`c`, strictly between 0 and 1.

  Returns:
    ``{"n", "mean_diff", "std_diff", "ci_low", "ci_high", "p_value"}``.

  Raises:
    ValueError: if ``a`` or ``b`` is empty or non-finite, their lengths differ, or
      ``confidence`` is not in (0, 1).
  """
  x = _as_values(a, "a")
  y = _as_values(b, "b")
  if x.size != y.size:
    raise ValueError(f"a and b must have the same length, got {x.size} and {y.size}")
  confidence = _check_confidence(confidence)
  d = x - y
  n = int(d.size)
  if n < 2:
    return {"n": n, "mean_diff": float(d[0]), "std_diff": 0.0, "ci_low": _NAN, "ci_high": _NAN,
            "p_value": _NAN}
  if np.all(d == d[0]):
    mean = float(d[0])
    return {"n": n, "mean_diff": mean, "std_diff": 0.0, "ci_low": mean, "ci_high": mean,
            "p_value": 0.0 if mean != 0.0 else 1.0}
  mean = float(np.mean(d))
  std = float(np.std(d, ddof=1))
  half = _t_quantile(confidence, n) * std / math.sqrt(n)
  from scipy import stats as st

  p_value = float(st.ttest_rel(x, y).pvalue)
  return {"n": n, "mean_diff": mean, "std_diff": std, "ci_low": mean - half,
          "ci_high": mean + half, "p_value": p_value}


def verdict(found: Sequence[float], best_baseline: Sequence[float], confidence: float = 0.95,
            higher_is_better: bool = True) -> str:
  r"""Whether ``found`` beats ``best_baseline`` over matched seeds: "wins", "ties" or "loses".

  Uses the paired interval :math:`[L, U]` of :math:`d_i = \mathrm{found}_i -
  \mathrm{best}_i` (see :func:`paired`). For ``higher_is_better`` (e.g. accuracy):

  * "wins" if :math:`L > 0` (the whole interval lies above 0),
  * "loses" if :math:`U < 0` (the whole interval lies below 0),
  * "ties" otherwise (the interval contains 0).

  For ``higher_is_better=False`` (e.g. a loss) the sides are mirrored: "wins" if
  :math:`U < 0`, "loses" if :math:`L > 0`.

  With ``n < 2`` there is no interval, so the verdict is the sign of the single difference
  :math:`\bar d`: strictly better -> "wins", strictly worse -> "loses", equal -> "ties".
  When all differences are identical the interval is the point :math:`[\bar d, \bar d]`, so
  the same sign rule applies.

  Raises:
    ValueError: as :func:`paired`.
  """
  res = paired(found, best_baseline, confidence)
  if res["n"] < 2:
    low = high = res["mean_diff"]
  else:
    low, high = res["ci_low"], res["ci_high"]
  if not higher_is_better:
    low, high = -high, -low
  if low > 0.0:
    return "wins"
  if high < 0.0:
    return "loses"
  return "ties"


def best_variant(results: Mapping[str, Sequence[float]], higher_is_better: bool = True) -> str:
  r"""The name in ``results`` whose values have the best mean.

  .. math::

    \operatorname*{arg\,max}_k \bar x_k \ \text{(higher is better)}, \qquad
    \operatorname*{arg\,min}_k \bar x_k \ \text{(otherwise)}.

  Ties (exactly equal means) are broken by name order: the lexicographically smallest name
  wins, independent of the mapping's iteration order.

  Raises:
    ValueError: if ``results`` is empty, or any of its sequences is empty or non-finite.
  """
  if not results:
    raise ValueError("results must not be empty")
  means = {name: float(np.mean(_as_values(vals, f"results[{name!r}]")))
           for name, vals in results.items()}
  sign = -1.0 if higher_is_better else 1.0
  return min(sorted(means), key=lambda name: sign * means[name])


def standard_error(values: Sequence[float]) -> float:
  r"""The standard error of the mean, :math:`s / \sqrt n` (sample standard deviation); 0 for
  one value."""
  x = _as_values(values)
  return float(np.std(x, ddof=1) / math.sqrt(x.size)) if x.size > 1 else 0.0


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
  r"""Spearman's rank correlation of ``a`` and ``b`` (Pearson's correlation of their ranks,
  ties at their mean rank; ``scipy.stats.spearmanr``); 0 where either is constant."""
  from scipy import stats as st

  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
    return 0.0
  return float(st.spearmanr(a, b).statistic)


def kendall(a: Sequence[float], b: Sequence[float]) -> float:
  r"""Kendall's :math:`\tau_b` of ``a`` and ``b`` (concordant minus discordant pairs over the
  pairs not tied; ``scipy.stats.kendalltau``); 0 where either is constant."""
  from scipy import stats as st

  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
    return 0.0
  return float(st.kendalltau(a, b).statistic)
