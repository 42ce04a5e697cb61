r"""The race (``search.strategy = race``): successive halving over the candidates' networks.

Every candidate's network (the candidate in every slot: the network the truth and the
retrain's baselines train) starts from scratch with the retrain recipe on the train split,
``search.race.seeds`` initialisations each, with a schedule that spans ``search.race.epochs``.
At each epoch of ``search.race.rungs`` the networks still running are scored on the val split
(the mean over their initialisations) and only the best ``search.race.keep`` of them (at least
one) go on; the others stop where they are. After the last epoch the best network is chosen.
Successive halving (Jamieson & Talwalkar 2016; the inner loop of Hyperband, Li et al. 2018):
the budget goes to the networks that are still in the race, so the few that matter train
longest, and no network trains that the measurements have already ruled out.

All networks are members of one stack trained by the shared trainer in one compiled program:
their slots are ``SwitchActivation``\ s (each computes only its own candidate, its index part
of the state), the members are taken one after the other inside the step (``lax.map``), and a
stopped member computes nothing (``lax.cond``). A network whose loss is not finite stops
alone (score ``-inf``). The rungs' scores are written to ``WORKDIR/race.json`` as they are
measured, and the stack is checkpointed at every epoch, so a killed race resumes where it was.

A candidate's score in the record is its last val score; ``selection.rounds`` says how many
rungs it passed (a candidate stopped early ranks below every candidate that went further).
"""

from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from actsearch import data, models
from actsearch.errors import UserError
from actsearch.models import network
from actsearch.space import activations
from actsearch.space.mixed import Choice
from actsearch.strategies.base import Found, Run, Strategy
from actsearch.train import files, step, trainer
from actsearch.train.objective import Objective

RACE_FILE = "race.json"


def check(cfg: ml_collections.ConfigDict) -> None:
  """``search.race``: epochs >= 1; rungs increasing epochs below it; keep in (0, 1);
  seeds >= 1; no ``search.slot_candidates`` (every network has one candidate everywhere)."""
  r = cfg.search.race
  if isinstance(r.epochs, bool) or not isinstance(r.epochs, int) or r.epochs < 1:
    raise UserError(f"search.race.epochs must be a positive integer, got {r.epochs!r}")
  rungs = list(r.rungs)
  if any(isinstance(e, bool) or not isinstance(e, int) for e in rungs) or rungs != sorted(
      set(rungs)) or (rungs and (rungs[0] < 1 or rungs[-1] >= r.epochs)):
    raise UserError(f"search.race.rungs must be increasing epochs in [1, search.race.epochs), "
                    f"got {rungs}")
  if not isinstance(r.keep, (int, float)) or isinstance(r.keep, bool) or not 0 < r.keep < 1:
    raise UserError(f"search.race.keep must lie in (0, 1), got {r.keep!r}")
  if isinstance(r.seeds, bool) or not isinstance(r.seeds, int) or r.seeds < 1:
    raise UserError(f"search.race.seeds must be a positive integer, got {r.seeds!r}")
  if cfg.search.get("slot_candidates"):
    raise UserError("search.strategy race searches one candidate list for every slot; "
                    "search.slot_candidates is another strategy's")


def survivors(scores: dict[str, float], alive: list[str], keep: float) -> list[str]:
  """The best ``ceil(keep * len(alive))`` of ``alive`` by score (at least one; ties: the
  order of ``alive``)."""
  n = max(1, math.ceil(keep * len(alive)))
  return sorted(alive, key=lambda c: (-_finite(scores[c]), alive.index(c)))[:n]


def _finite(v: float) -> float:
  return v if np.isfinite(v) else -np.inf


def _with_choice(state, index: int):
  """``state`` with every ``SwitchActivation`` at candidate ``index``."""
  return state.replace(rest=jax.tree.map(
      lambda v: v.replace(jnp.full_like(v[...], index)) if isinstance(v, Choice) else v,
      state.rest, is_leaf=lambda v: isinstance(v, nnx.Variable)))


def run(r: Run) -> Found:
  cfg, splits = r.cfg, r.splits
  rc = cfg.search.race
  cands = list(cfg.search.candidates)
  seeds = [cfg.seed + j for j in range(rc.seeds)]
  gran = cfg.search.get("param_granularity") or cfg.search.granularity
  slot = models.switch_slots(cands, gran)
  members, names = [], []
  graphdef = None
  inits = {}
  for s in seeds:
    graphdef, inits[s] = step.init_state(models.build(
        cfg.model, splits.input_shape, splits.num_outputs, slot, network.rngs(s)), None)
  for i, c in enumerate(cands):
    for s in seeds:
      members.append(_with_choice(inits[s], i).replace(active=jnp.asarray(True)))
      names.append(f"race/{c}/seed{s}")
  stacked = trainer.stack(members)
  objective = Objective(graphdef, splits.task, splits.loss)
  recipe = cfg.retrain.copy_and_resolve_references()
  recipe.epochs = rc.epochs
  classification = splits.task == data.CLASSIFICATION
  path = os.path.join(r.workdir, RACE_FILE)
  log = files.read_json(path) if os.path.exists(path) else {"rungs": []}
  scorer = trainer.evaluator(objective, splits.x_val, splits.y_val,
                             cfg.search.eval_batch_size, "val", "map")
  checkpoints = sorted({*rc.rungs, rc.epochs})
  start = time.perf_counter()

  def after_epoch(epoch: int, host):
    if epoch not in checkpoints or any(g["epoch"] == epoch for g in log["rungs"]):
      return host
    from actsearch.train import parallel
    out = scorer(parallel.replicate(host))
    per = np.asarray(out["val/accuracy"] if classification else -out["val/loss"], np.float64)
    active = np.asarray(host.active, bool)
    per = np.where(active, per, -np.inf).reshape(len(cands), len(seeds))
    alive = [c for c in cands if c in (log["rungs"][-1]["kept"] if log["rungs"] else cands)]
    scores = {c: float(per[cands.index(c)].mean()) for c in alive}
    kept = survivors(scores, alive, rc.keep) if epoch != rc.epochs else alive
    log["rungs"].append({"epoch": epoch, "scores": scores, "kept": kept,
                         "per_seed": {c: [float(v) for v in per[cands.index(c)]]
                                      for c in alive}})
    if r.primary:
      files.write_json_atomic(path, log)
    r.logger.scalars(epoch, {f"race/{c}": v for c, v in scores.items() if np.isfinite(v)})
    keep = np.repeat([c in kept for c in cands], len(seeds))
    return host.replace(active=np.asarray(host.active, bool) & keep)

  trainer.fit(recipe, objective, stacked, splits.x_train, splits.y_train, r.workdir, seeds
              * len(cands), names, key="race", progress=r.progress, desc="race",
              resident_mb=cfg.data.resident_mb, after_epoch=after_epoch, members="map")
  return _found(cfg, cands, log, splits, time.perf_counter() - start)


def _found(cfg, cands: list[str], log: dict, splits: data.Splits, seconds: float) -> Found:
  rc = cfg.search.race
  last, rounds = {}, {}
  for i, g in enumerate(log["rungs"]):
    for c, v in g["scores"].items():
      last[c], rounds[c] = v, i
  final = log["rungs"][-1]["scores"]
  best = max(final, key=lambda c: (_finite(final[c]), -cands.index(c)))
  steps = len(splits.x_train) // cfg.retrain.batch_size
  epochs_run = {c: 0 for c in cands}
  for g in log["rungs"]:
    for c in g["scores"]:
      epochs_run[c] = g["epoch"]
  examples = sum(epochs_run.values()) * steps * cfg.retrain.batch_size * rc.seeds
  probe = models.build(cfg.model, splits.input_shape, splits.num_outputs,
                       models.uniform_slots(best), network.rngs(cfg.seed))
  layers = [{"name": n, "choice": best, "formula": activations.get(best).formula,
             "candidates": cands, "scores": {c: float(v) for c, v in last.items()},
             "params": {}} for n, _ in models.slots(probe)]
  score_name = (("val accuracy" if splits.task == data.CLASSIFICATION else "minus val loss")
                + f" at the rung each candidate reached (of {rc.epochs} epochs, rungs "
                f"{list(rc.rungs)}, keeping {rc.keep:g}), mean of {rc.seeds} seeds")
  info = {"method": "race", "score": score_name, "seconds": seconds,
          "rounds": rounds, "rungs": log["rungs"],
          "evaluated": [{"choices": {layer["name"]: c for layer in layers}, "score": v}
                        for c, v in last.items()]}
  key = "val_accuracy" if splits.task == data.CLASSIFICATION else "val_minus_loss"
  return Found(layers=layers, metrics={key: final[best]}, step=rc.epochs,
               fields={"relaxation": None, "granularity": "layer", "discretize": "race",
                       "selection": info},
               cost={"examples": int(examples), "trainings": len(cands) * rc.seeds})


STRATEGY = Strategy(run=run, check=check,
                    doc="the race: every candidate's network trained on the train split, the "
                        "best half kept at each rung (successive halving), the best chosen")
