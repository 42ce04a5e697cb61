"""Random search (``search.strategy=random``): networks drawn uniformly, one candidate per
slot independently, until the budget is spent; the best evaluated wins.

The baseline every search must beat (Li and Talwalkar 2019, "Random search and
reproducibility for NAS"). A network drawn again is answered by the cache and not counted, so
``n`` distinct trainings are ``n`` distinct networks: with ``m`` good networks among ``N``,
the chance that ``n`` distinct uniform draws hold one is ``1 - C(N - m, n) / C(N, n)``
(``chance_of_finding``). Draws are made ``search.random.batch`` at a time and trained together.
"""

from __future__ import annotations

import math

import numpy as np

from actsearch.strategies import blackbox


def search(space: blackbox.Space, evals: blackbox.Evaluations, seed: int,
           batch: int = 8) -> None:
  """Draws until ``evals`` is out of budget (or every network is evaluated)."""
  rng = np.random.default_rng([seed, 0x52])
  while len(evals.scores) < space.size:
    evals.evaluate([space.random(rng) for _ in range(batch)])


def chance_of_finding(total: int, good: int, draws: int) -> float:
  """P(at least one of ``good`` among ``total`` networks in ``draws`` distinct uniform
  draws) = 1 - C(total - good, draws) / C(total, draws)."""
  if draws >= total - good + 1:
    return 1.0
  return 1.0 - math.comb(total - good, draws) / math.comb(total, draws)
