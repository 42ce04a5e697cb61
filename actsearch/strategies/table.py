"""The table of search strategies: ``search.strategy`` names an entry.

Like ``discretize.METHODS``, a strategy is one entry: ``darts``, ``random``, ``evolution``,
``reinforce``, ``correlation``, ``random_activation`` and ``race`` are built in, and
``register("name", Strategy(run=...))`` (``actsearch.register_strategy``, in a file passed with
``--import``) makes ``--set search.strategy=name`` run another. ``base`` says what a strategy
is given and returns; its ``defaults`` are the config namespace ``search.<name>``.
"""

from __future__ import annotations

from actsearch.errors import UserError
from actsearch.registry import Registry
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

STRATEGIES: Registry[Strategy] = Registry("strategy", "search.strategy")
for _name, _strategy in (
    ("darts", darts.STRATEGY),
    ("random", blackbox.make("random", random_search.search,
                             "random search: uniform networks, the best evaluated",
                             defaults={"batch": 8})),
    # Real et al. 2019: population size, tournament sample size (chosen for budgets of about
    # 50 networks on the planted teacher's seeds 10-59: docs/strategies.md)
    ("evolution", blackbox.make("evolution", evolution.search,
                                "regularized evolution: tournament, one-slot mutation, aging",
                                defaults={"population": 6, "sample": 6})),
    # networks per policy update, the policy's step size, the moving-average baseline's decay
    ("reinforce", blackbox.make("reinforce", reinforce.search,
                                "REINFORCE on a categorical policy per slot, moving-average "
                                "baseline", defaults={"batch": 2, "lr": 1.0,
                                                      "baseline_decay": 0.9})),
    ("correlation", correlation.STRATEGY),
    ("random_activation", random_activation.STRATEGY),
    ("race", race.STRATEGY)):
  STRATEGIES.add(_name, _strategy, builtin=True)


def register(name: str, strategy: Strategy) -> Strategy:
  """Adds the strategy ``name`` (``search.strategy``; a user's own may be registered again,
  a built-in's name is refused); returns it. Its
  ``defaults`` become the config namespace ``search.<name>`` of ``configs.base_config()``.
  """
  if name in STRATEGIES and STRATEGIES.code(name) is None:
    raise UserError(f"a strategy needs a new name: {name!r} is built in")
  if not isinstance(strategy, Strategy):
    raise UserError(f"strategy {name!r} must be an actsearch.Strategy (strategies.base)")
  if strategy.defaults is not None and not isinstance(strategy.defaults, dict):
    raise UserError(f"strategy {name!r}: defaults must be a dict (its config namespace "
                    f"search.{name})")
  return STRATEGIES.add(name, strategy, origin=strategy.run)


def get(name: str) -> Strategy:
  return STRATEGIES.require(name)


def defaults() -> dict[str, dict]:
  """Every strategy's config namespace, ``{name: defaults}``, in registration order."""
  return {n: s.defaults for n, s in STRATEGIES.items() if s.defaults is not None}
