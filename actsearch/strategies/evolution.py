"""Regularized evolution (``search.strategy=evolution``; Real et al. 2019, "Regularized
evolution for image classifier architecture search", Algorithm 1).

1. A population of ``search.evolution.population`` random networks, trained and scored
   together.
2. Each cycle: ``search.evolution.sample`` members drawn at random (without replacement); the
   best of them is the parent; the child is the parent with one slot, drawn uniformly, changed
   to another of its candidates, drawn uniformly; the child is scored and joins the
   population, and the **oldest** member dies (not the worst: aging regularizes, a network
   lucky once does not stay forever).
3. Until the budget is spent; the best network ever evaluated wins.

A child evaluated before takes its score from the cache (not trained, not counted) and still
joins the population, as in the paper, where a repeated architecture is simply trained again.
"""

from __future__ import annotations

import collections

import numpy as np

from actsearch.strategies import blackbox

PROPOSALS_PER_TRAINING = 50  # a population that only proposes cached networks ends the run


def mutate(space: blackbox.Space, net: blackbox.Net, rng: np.random.Generator) -> blackbox.Net:
  """``net`` with one slot (of those with two or more candidates) set to another candidate."""
  free = [s for s, c in enumerate(space.candidates) if len(c) > 1]
  if not free:
    return net
  s = free[int(rng.integers(len(free)))]
  other = int(rng.integers(len(space.candidates[s]) - 1))
  child = list(net)
  child[s] = other + (other >= net[s])
  return tuple(child)


def search(space: blackbox.Space, evals: blackbox.Evaluations, seed: int,
           population: int = 6, sample: int = 6) -> None:
  rng = np.random.default_rng([seed, 0xE7])
  members = [space.random(rng) for _ in range(population)]
  alive = collections.deque(zip(members, evals.evaluate(members)))
  limit = PROPOSALS_PER_TRAINING * max(evals.trainings, 1)
  while evals.proposals < limit and len(evals.scores) < space.size:
    drawn = rng.choice(len(alive), size=min(sample, len(alive)), replace=False)
    parent = max((alive[int(i)] for i in drawn), key=lambda m: blackbox.finite(m[1]))[0]
    child = mutate(space, parent, rng)
    [score] = evals.evaluate([child])
    alive.append((child, score))
    alive.popleft()
