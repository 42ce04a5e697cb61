r"""Learning-curve extrapolation: a network's val score at the retrain's data size, from its
scores on growing shares of the search's train split.

The selection scores networks trained on the train split (``n`` examples), but the retrain
trains on train + val (``N``, twice as many by default), and rankings cross between the two:
on the MNIST-1D MLP the best screened activations at 4000 examples (tanh_shrink, soft_shrink)
are the flattest learning curves and fall behind GELU at 8000 (docs/choosing-defaults.md).
With ``search.learning_curve`` each network is scored after training on ``n/4``, ``n/2`` and
``n`` examples (the same epochs, so the steps grow with the data, as the retrain's do) and
ranked by the curve's value at ``N``.

The curve is the power law of learning curves in data size (Hestness et al. 2017, "Deep
Learning Scaling is Predictable, Empirically"; Rosenfeld et al. 2020),
:math:`f(m) = a - b\,m^{-c}`, fitted exactly to three scores at sizes in ratio ``q``
(:math:`f_0, f_1, f_2`). Its increments shrink geometrically: with :math:`d_1 = f_1 - f_0`,
:math:`d_2 = f_2 - f_1` and :math:`\rho = d_2 / d_1 = q^{-c}`, the value
:math:`k = \log_q(N / n)` ratios beyond the last point is

.. math:: f(N) = f_2 + d_2 \, \rho \, \frac{1 - \rho^k}{1 - \rho}
   \quad (\rho < 1), \qquad f_2 + d_2 \, k \quad (\rho = 1).

Noise can make a measured curve bend the wrong way; the rule then says the least it can:
:math:`\rho` is clipped to ``[0, 1]`` (an accelerating curve is taken as straight in
:math:`\log m`; a first increment that is not positive, likewise), and a last increment that is
not positive predicts no further gain (:math:`f(N) = f_2`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SHARES = (0.25, 0.5, 1.0)  # of the train split
RATIO = 2.0                # q: the shares' ratio


def sizes(n: int, shares: Sequence[float] = SHARES) -> list[int]:
  """The train sizes a curve is measured at (at least one example each)."""
  return [max(1, int(round(n * s))) for s in shares]


def extrapolate(scores: Sequence[float], ratio: float, beyond: float) -> float:
  """``f(N)`` from three scores at sizes in ratio ``ratio``; ``beyond = N / n`` (the target
  size over the last point's). A non-finite score (a diverged network) gives -inf."""
  f0, f1, f2 = (float(s) for s in scores)
  if not all(math.isfinite(s) for s in (f0, f1, f2)):
    return -math.inf
  if beyond <= 1.0:
    return f2
  d1, d2 = f1 - f0, f2 - f1
  if d2 <= 0:
    return f2
  k = math.log(beyond) / math.log(ratio)
  rho = 1.0 if d1 <= 0 else min(max(d2 / d1, 0.0), 1.0)
  if rho >= 1.0:
    return f2 + d2 * k
  return f2 + d2 * rho * (1.0 - rho ** k) / (1.0 - rho)
