"""Random activation (``search.strategy=random_activation``): a regulariser turned into a
search. During training each slot computes one activation drawn at random per step from its
candidates (relaxation ``draw``: uniform, the whole batch sharing the draw, keyed by the step
and the slot's name); the weights train, nothing else does. At the end each slot is fixed to
the activation that serves it best on the val split (discretize ``pinned``: jointly over the
combinations when they number at most ``search.shortlist_max``, otherwise slot by slot), and
the best of each slot are validated by the shortlist as DARTS' search is.

Drawn per step, the activation acts as a regulariser (as dropout draws units); here the draw
also ranks: a network trained with every candidate in turn is asked which it serves best. It runs
on the supernet's loop (resume, devices, checkpoints) with alpha frozen: the step is DARTS'
warm-up for the whole run. The supernet computes every candidate of a slot (weights 0 but one), so a
step costs what a DARTS step does.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from actsearch import data
from actsearch.strategies import supernet
from actsearch.strategies.base import Strategy


def config(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``cfg`` as the strategy runs it: relaxation ``draw``, one draw per layer, discretize
  ``pinned``."""
  c = cfg.copy_and_resolve_references()
  c.search.relaxation, c.search.granularity, c.search.discretize = "draw", "layer", "pinned"
  c.search.temperature_final = None
  return c


def setup(cfg: ml_collections.ConfigDict, splits: data.Splits | None = None) -> supernet.Setup:
  su = supernet.setup(config(cfg), splits)
  frozen = su.cfg.search.epochs * su.steps_per_epoch  # alpha never moves
  return dataclasses.replace(su, step_fn=dataclasses.replace(su.step_fn, warmup_steps=frozen))


STRATEGY = Strategy(setup=setup, run=supernet.run,
                    check=lambda cfg: supernet.check(config(cfg)), export=supernet.export,
                    budget=supernet.budget,
                    doc="random activation: a random candidate per step and slot, then the "
                        "one that serves each slot best, validated by the shortlist")
