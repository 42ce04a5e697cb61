r"""Distinct families of candidates: whether one function equals another up to an affine map.

Function :math:`f` *reaches* :math:`g` on a grid :math:`x_i` when some
:math:`a\,f(b x + c) + d` fits :math:`g`; the residual is the root mean square of
:math:`a\,f(b x_i + c) + d - g(x_i)` at the best :math:`(a, b, c, d)` (``affine_residual``:
:math:`a, d` by linear least squares for each :math:`(b, c)` of a coarse grid, then all four
refined by Levenberg-Marquardt, scipy). Two families are distinct when neither reaches the
other with a residual of 1e-2 or less on [-5, 5] (``DISTINCT``).

The families: each fixed candidate is one unless it names the parametric family it belongs
to (``Candidate.family``; ReLU is PReLU at slope 0), each parametric or learned candidate
counts once whatever its parameters, and the members of a sized family (``maxout_k4``) are
not counted apart from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

GRID = (-5.0, 5.0, 401)
DISTINCT = 1e-2
REFINE = 0.15  # coarse fits worse than this are not refined


def affine_residual(f: Callable[[np.ndarray], np.ndarray], g: Callable[[np.ndarray], np.ndarray],
                    grid: tuple[float, float, int] = GRID) -> float:
  """The smallest RMS of :math:`a f(b x + c) + d - g(x)` over the grid (see the module)."""
  from scipy.optimize import least_squares

  x = np.linspace(*grid)
  target = np.asarray(g(x), np.float64)

  def linear(fx):
    """Per row of ``fx``: the RMS of the best ``a fx + d`` against the target, and a, d."""
    mf, mt = fx.mean(-1, keepdims=True), target.mean()
    cov = ((fx - mf) * (target - mt)).mean(-1)
    var = ((fx - mf) ** 2).mean(-1)
    a = np.where(var > 1e-12, cov / np.maximum(var, 1e-12), 0.0)
    d = mt - a * mf[..., 0]
    rms = np.sqrt(np.mean((a[..., None] * fx + d[..., None] - target) ** 2, -1))
    return np.where(np.isfinite(rms), rms, np.inf), a, d

  # The coarse grid in one call of f: 82 scales b (both signs, 0.01 to 100, 1 among them) x
  # 49 shifts c (steps of 0.5).
  scales = np.concatenate([-np.geomspace(0.01, 100, 41), np.geomspace(0.01, 100, 41)])
  b, c = (v.ravel() for v in np.meshgrid(scales, np.linspace(-12, 12, 49), indexing="ij"))
  with np.errstate(all="ignore"):
    rms, a, d = linear(np.asarray(f(b[:, None] * x + c[:, None]), np.float64))
  order = np.argsort(rms)[:6]
  starts = [(rms[i], b[i], c[i], a[i], d[i]) for i in order]
  best = float(starts[0][0])
  for rms0, b0, c0, a0, d0 in starts[:3]:
    if rms0 > REFINE:  # no refinement from that far takes it below DISTINCT
      break

    def res(p):
      out = p[0] * np.asarray(f(p[1] * x + p[2]), np.float64) + p[3] - target
      return np.where(np.isfinite(out), out, 1e6)
    try:
      fit = least_squares(res, [a0, b0, c0, d0], method="lm", max_nfev=300)
    except ValueError:
      continue
    best = min(best, float(np.sqrt(np.mean(fit.fun ** 2))))
  return best


def representatives(candidates: Sequence) -> dict[str, object]:
  """One candidate per family: ``{family name: candidate}`` (see the module)."""
  by_name = {c.name: c for c in candidates}
  out: dict[str, object] = {}
  for cand in candidates:
    family = cand.family or cand.name
    out.setdefault(family, by_name.get(family, cand))
  return out
