"""``actsearch search`` and ``export``: config -> data -> the strategy of ``search.strategy``
(``strategies.table``; DARTS by default) -> ``architecture.json`` and its pictures.

The command owns what every strategy shares: the config checks, the data, one run per
workdir (the lock), ``config.json`` (a workdir holding another config is refused), the run's
logger, and the record. Everything that can refuse bad input runs before anything is
written.
"""

from __future__ import annotations

import json
import os
import time

import jax
import ml_collections

from actsearch import architecture, configs, data, plots, usercode
from actsearch.commands import workdirs
from actsearch.errors import UserError
from actsearch.strategies import table
from actsearch.strategies.base import Found, Run
from actsearch.train.events import RunLogger
from actsearch.train.lock import WorkdirLock


def record(cfg: ml_collections.ConfigDict, splits: data.Splits, found: Found,
           seconds: float | None = None) -> dict:
  """The ``architecture.json`` record of what a strategy found."""
  s = cfg.search
  fields = {"relaxation": s.relaxation, "granularity": s.granularity,
            "param_granularity": s.get("param_granularity") or s.granularity, **found.fields}
  cost = dict(found.cost)
  if seconds is not None:
    cost.setdefault("seconds", seconds)
  return architecture.make(
      found.layers, candidates=list(s.candidates), model=configs.to_json(cfg.model),
      data={**configs.to_json(cfg.data), **splits.describe()}, metrics=found.metrics,
      seed=cfg.seed, retrain=configs.to_json(cfg.retrain), strategy=s.strategy,
      cost=cost, code=usercode.code_of(cfg), **fields)


def run(cfg: ml_collections.ConfigDict, workdir: str, *, stop_epoch: int | None = None,
        data_path: str | None = None, progress: bool = True,
        timeline: list | None = None) -> dict:
  """Searches, resuming from ``workdir`` if it holds a checkpoint; returns the architecture.
  ``cfg`` is not changed: the run reads its resolved copy (``workdirs.resolve``)."""
  cfg = workdirs.resolve(cfg, workdir, data_path)
  stop = cfg.search.epochs if stop_epoch is None else stop_epoch
  if stop < 1:
    raise UserError(f"--epochs must be a positive integer, got {stop}")
  strategy = table.get(cfg.search.strategy)
  splits = data.load(cfg.data, cfg.seed)
  prepared = strategy.setup(cfg, splits)
  primary = jax.process_index() == 0
  with WorkdirLock(workdir, enabled=primary):  # one run per workdir
    workdirs.prepare(workdir, cfg, primary)
    logger = RunLogger(workdir, enabled=primary)
    if primary:
      plots.preload()  # drawn at the end
    start = time.perf_counter()
    try:
      found = strategy.run(Run(setup=prepared, cfg=cfg, splits=splits, workdir=workdir,
                               stop_epoch=stop, primary=primary, logger=logger,
                               progress=progress, timeline=timeline))
      arch = record(cfg, splits, found, time.perf_counter() - start)
      if primary:
        architecture.save(os.path.join(workdir, "architecture.json"), arch)
        plots.write(workdir, arch, writer=logger.writer, step=found.step)
        if logger.writer is not None:  # what chose, what each scored, what it cost
          logger.writer.add_text("search/result", "    " + architecture.table(arch).replace(
              "\n", "\n    "), found.step)
    finally:
      logger.close()
  return arch


def export(run_dir: str, out: str | None = None) -> dict:
  """Discretizes the newest checkpoint of a run and writes the architecture."""
  cfg_path = os.path.join(run_dir, "config.json")
  if not os.path.isfile(cfg_path):
    raise UserError(f"{run_dir} is not a search run (no config.json)")
  try:
    with open(cfg_path, encoding="utf-8") as f:
      cfg = configs.from_json(json.load(f))
  except json.JSONDecodeError as e:
    raise UserError(f"{cfg_path}: malformed JSON ({e.msg})") from None
  usercode.check_code(cfg, cfg_path)
  cfg = workdirs.resolve(cfg, run_dir)  # as the search resolved it: the run's plan
  strategy = table.get(cfg.search.strategy)
  if strategy.export is None:
    raise UserError(f"search.strategy {cfg.search.strategy!r} has no export; its run "
                    "writes architecture.json at its end")
  splits = data.load(cfg.data, cfg.seed)
  arch = record(cfg, splits, strategy.export(strategy.setup(cfg, splits), run_dir))
  out = out or os.path.join(run_dir, "architecture.json")
  architecture.save(out, arch)
  plots.write(os.path.dirname(os.path.abspath(out)), arch)
  return arch
