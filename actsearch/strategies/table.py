"""The table of search strategies: ``search.strategy`` names an entry.

Like ``discretize.METHODS``, a strategy is one entry: ``darts``, ``random``, ``evolution``,
``reinforce``, ``correlation``, ``random_activation`` and ``race`` are built in, and
``register("name", Strategy(run=...))`` (in an experiment file, say) makes
``--set search.strategy=name`` run another. ``base`` says what a strategy is given and returns.
"""

from __future__ import annotations

from actsearch.errors import UserError
from actsearch.strategies import (
  blackbox,
  correlation,
  darts,
  evolution,
  race,
  random_activation,
  random_search,
  reinforce,
)
from actsearch.strategies.base import Strategy

STRATEGIES: dict[str, Strategy] = {
    "darts": darts.STRATEGY,
    "random": blackbox.make("random", random_search.search,
                            "random search: uniform networks, the best evaluated"),
    "evolution": blackbox.make("evolution", evolution.search,
                               "regularized evolution: tournament, one-slot mutation, aging"),
    "reinforce": blackbox.make("reinforce", reinforce.search,
                               "REINFORCE on a categorical policy per slot, moving-average "
                               "baseline"),
    "correlation": correlation.STRATEGY,
    "random_activation": random_activation.STRATEGY,
    "race": race.STRATEGY,
}


def register(name: str, strategy: Strategy) -> Strategy:
  """Adds (or replaces) the strategy ``name``; returns it."""
  if not isinstance(strategy, Strategy):
    raise UserError(f"strategy {name!r} must be a strategies.base.Strategy")
  STRATEGIES[name] = strategy
  return strategy


def get(name: str) -> Strategy:
  if name not in STRATEGIES:
    raise UserError(f"search.strategy is {name!r}; known: {', '.join(STRATEGIES)}")
  return STRATEGIES[name]
