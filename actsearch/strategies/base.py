"""What a search strategy is given and returns (the table of strategies is ``table``).

A strategy finds one choice per slot. ``setup(cfg, splits)`` builds what it needs (and
rejects what it cannot run with) before the command writes anything; ``run`` then gets a
``Run`` (that setup, the config, the data splits, the workdir with its lock held and
``config.json`` written, the run's logger) and returns a
``Found``: the record's layers (one dict per slot: ``name``, ``choice``, ``weights`` of every
candidate, ``scores``, ``params``), the record fields it decides (relaxation, granularity,
discretization and what the selection measured), the metrics and the last step. The search
command turns that into ``architecture.json`` and its pictures; resuming is the strategy's own
business (``darts`` resumes through the shared loop, a strategy that trains networks through
the shared trainer, whose runs are keyed by what they train).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import ml_collections

from actsearch import data


@dataclasses.dataclass
class Run:
  """What a strategy is given."""
  setup: Any                    # what the strategy's ``setup`` returned
  cfg: ml_collections.ConfigDict
  splits: data.Splits
  workdir: str
  stop_epoch: int               # where this invocation stops (``--epochs``)
  primary: bool                 # process 0: the one that writes
  logger: Any                   # ``events.RunLogger`` of the workdir
  progress: bool = True
  timeline: list | None = None  # the loop's timings, for the bench


@dataclasses.dataclass
class Found:
  """What a strategy found: the record's layers and the fields only it knows."""
  layers: list[dict]
  metrics: dict[str, float]
  fields: dict[str, Any]        # relaxation, granularity, discretize, selection
  step: int = 0                 # the global step of the state it was found at
  # what it spent, by name (``strategy.cost`` of the record; the command adds ``seconds``)
  cost: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Spend:
  """What ``actsearch compare`` gives a strategy: ``scale`` times the reference spend
  ``examples`` (DARTS' 1x search of the same task and seed, in training examples; its train
  split holds ``train_examples``)."""
  scale: int
  examples: float
  train_examples: int


@dataclasses.dataclass(frozen=True)
class Strategy:
  """A search strategy: an entry of ``table.STRATEGIES`` (``actsearch.register_strategy``)."""
  run: Callable[[Run], Found]
  # (cfg, splits) -> what ``run`` and ``export`` need; raises ``UserError`` on bad input
  setup: Callable[[ml_collections.ConfigDict, data.Splits], Any] = lambda cfg, splits: None
  # rejects config values the strategy cannot run with (one ``UserError`` naming the key)
  check: Callable[[ml_collections.ConfigDict], None] = lambda cfg: None
  # (setup, run directory) -> the newest checkpoint discretized again (``actsearch export``)
  export: Callable[[Any, str], Found] | None = None
  doc: str = ""                 # one line, for listings
  # its own config keys, the namespace ``search.<name>`` (default values; None: it has none)
  defaults: dict | None = None
  # (cfg, spend): sets the strategy's keys of ``cfg`` (a copy) so that it spends about
  # ``spend.scale * spend.examples`` (``actsearch compare``); None: not compared
  budget: Callable[[ml_collections.ConfigDict, Spend], None] | None = None
