r"""The race (``search.strategy = race``): the candidates' networks trained in cycles, the best
going on.

Every candidate's network (the candidate in every slot: the network the truth and the
retrain's baselines train) starts from scratch with the retrain recipe on the train split,
``search.race.seeds`` initialisations each, and trains for a first cycle of
``search.race.epochs[0]`` epochs (a whole schedule: warm-up, cosine decay to ``lr_min``).
Then each network is scored (the mean over its initialisations) and only the best
``search.race.keep[0]`` go on, ranked by ``search.race.cut``: ``train_loss`` (the default),
the network's loss on the train split at the cycle's end, how fast it learns (Ru et al.
2021's training-speed estimate), or ``val``, its score on the val split (both are recorded),
each from its weights with a fresh optimizer and a fresh schedule of
``search.race.epochs[1]`` epochs (a warm restart, Loshchilov & Hutter 2017, SGDR), and so
on; after the last cycle the best network by val score is chosen. Successive halving
(Jamieson & Talwalkar 2016; Hyperband's inner loop, Li et al. 2018), each rung read at the
end of an annealed schedule: the budget goes to the networks that are still in the race, and
every score compares networks trained alike.

The networks of a cycle are members of one stack trained by the shared trainer in one
compiled program: their slots are ``SwitchActivation``\ s (each computes only its own
candidate, its index part of the state) and the members are taken one after the other, each
by a call of that program (``trainer.one_by_one``; not ``lax.map``, inside which XLA's CPU
backend runs convolutions' gradients 30 times slower). A network whose loss is not finite
stops alone (score ``-inf``). Each cycle's scores are written to ``WORKDIR/race.json`` when it
ends, and each cycle's training resumes from its checkpoints, so a killed race goes on where
it was.

``search.epochs`` (or ``--epochs``) caps every cycle's epochs: ``--epochs 1`` runs the whole
race with cycles of one epoch, a trial of the pipeline (a workdir keeps the cycles it began
with).

A candidate's score in the record is its score after the last cycle it reached;
``selection.rounds`` says which cycle that was (a candidate stopped early ranks below every
candidate that went further).
"""

from __future__ import annotations

import os
import time
from typing import Any

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
from actsearch.train import files, parallel, step, trainer
from actsearch.train.objective import Objective

RACE_FILE = "race.json"
CUTS = ("val", "train_loss")  # what ranks the networks at a cycle's cut (``cut_scores``)


def check(cfg: ml_collections.ConfigDict) -> None:
  """``search.race``: epochs a non-empty list of positive integers (one per cycle); keep one
  count per cycle but the last, not increasing, at least 1; seeds >= 1; no
  ``search.slot_candidates`` (every network has one candidate everywhere)."""
  r = cfg.search.race
  whole = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1  # noqa: E731
  epochs, keep = list(r.epochs), list(r.keep)
  if not epochs or not all(whole(e) for e in epochs):
    raise UserError(f"search.race.epochs must be a non-empty list of positive integers (the "
                    f"epochs of each cycle), got {epochs}")
  if len(keep) != len(epochs) - 1 or not all(whole(k) for k in keep) or keep != sorted(
      keep, reverse=True):
    raise UserError(f"search.race.keep must give, for each cycle but the last, how many "
                    f"candidates go on (positive, not increasing), got {keep}")
  if not whole(r.seeds):
    raise UserError(f"search.race.seeds must be a positive integer, got {r.seeds!r}")
  if cut_of(r) not in CUTS:
    raise UserError(f"search.race.cut must be one of {', '.join(CUTS)}, got {r.cut!r}")
  if cfg.search.get("slot_candidates"):
    raise UserError("search.strategy race searches one candidate list for every slot; "
                    "search.slot_candidates is another strategy's")


def cycles(cfg, stop: int | None = None) -> list[int]:
  """Each cycle's epochs: ``search.race.epochs``, none beyond ``stop`` (default
  ``search.epochs``)."""
  cap = cfg.search.epochs if stop is None else stop
  return [min(int(e), int(cap)) for e in cfg.search.race.epochs]


def survivors(scores: dict[str, float], alive: list[str], keep: int) -> list[str]:
  """The best ``keep`` of ``alive`` by score (at least one; ties and NaN: the order of
  ``alive``, NaN and -inf last)."""
  return sorted(alive, key=lambda c: (-_finite(scores[c]), alive.index(c)))[:max(1, keep)]


def _finite(v: float) -> float:
  return v if np.isfinite(v) else -np.inf


def _with_choice(state, index: int):
  """``state`` with every ``SwitchActivation`` at candidate ``index``."""
  return state.replace(rest=jax.tree.map(
      lambda v: v.replace(jnp.full_like(v[...], index)) if isinstance(v, Choice) else v,
      state.rest, is_leaf=lambda v: isinstance(v, nnx.Variable)))


def _scores(objective, state, splits: data.Splits, cands: list[str], n_seeds: int,
            batch_size: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
  """Each network's val score and its loss on the train split (evaluation mode, no
  augmentation), per initialisation (-inf and inf where it diverged)."""
  val = trainer.evaluator(objective, splits.x_val, splits.y_val, batch_size, "val", "map")
  state_r = parallel.replicate(state)
  out = val(state_r)
  fit = val.over(splits.x_train, splits.y_train, "train")(state_r)
  active = np.asarray(state.active, bool)
  per = np.asarray(out["val/accuracy"] if splits.task == data.CLASSIFICATION
                   else -out["val/loss"], np.float64)
  per = np.where(active, per, -np.inf).reshape(len(cands), n_seeds)
  loss = np.where(active & np.isfinite(fit["train/loss"]), fit["train/loss"],
                  np.inf).reshape(len(cands), n_seeds)
  return ({c: [float(v) for v in per[i]] for i, c in enumerate(cands)},
          {c: [float(v) for v in loss[i]] for i, c in enumerate(cands)})


def cut_of(rc: ml_collections.ConfigDict) -> str:
  """``search.race.cut``; a workdir whose config predates the key ran with ``val``, and a
  resumed race goes on as it began."""
  return rc.get("cut", "val")


def cut_scores(cycle: dict, cut: str) -> dict[str, float]:
  """What a cycle's cut ranks by: its val scores (``val``), or minus each network's loss on
  the train split (``train_loss``: how fast it learns, Ru et al. 2021's training-speed
  estimate, read at the end of the cycle)."""
  if cut == "val":
    return cycle["scores"]
  return {c: -v for c, v in cycle["train_loss"].items()}


def run(r: Run) -> Found:
  cfg, splits = r.cfg, r.splits
  rc = cfg.search.race
  cands = list(cfg.search.candidates)
  seeds = [cfg.seed + j for j in range(rc.seeds)]
  path = os.path.join(r.workdir, RACE_FILE)
  log = files.read_json(path) if os.path.exists(path) else {"cycles": []}
  plan = cycles(cfg, r.stop_epoch)
  ran = [g["epochs"] for g in log["cycles"]]
  if ran != plan[:len(ran)]:
    raise UserError(f"{r.workdir} holds a race with cycles of {ran} epochs, not {plan}; use "
                    "a new --workdir or the same --epochs to resume")
  start = time.perf_counter()
  alive, trained = list(cands), {}
  for i, epochs in enumerate(plan):
    # each cycle's network holds only the candidates still in the race: its program compiles
    # the survivors' branches, not every candidate's
    graphdef, members = _members(cfg, splits, alive, seeds, trained)
    objective = Objective.of(graphdef, splits)
    recipe = cfg.retrain.copy_and_resolve_references()
    recipe.epochs = epochs
    stacked, _ = trainer.fit(
        recipe, objective, trainer.stack([members[c, s] for c in alive for s in seeds]),
        splits.x_train, splits.y_train, r.workdir, seeds * len(alive),
        [f"{c}/seed{s}" for c in alive for s in seeds],
        key=f"race/cycle{i + 1}", progress=r.progress, desc=f"race cycle {i + 1}",
        resident_mb=cfg.data.resident_mb, members="map")
    if len(log["cycles"]) <= i:
      per_seed, fit = _scores(objective, stacked, splits, alive, len(seeds),
                              cfg.search.eval_batch_size)
      cycle = {"epochs": epochs, "scores": {c: float(np.mean(v)) for c, v in per_seed.items()},
               "per_seed": per_seed,
               "train_loss": {c: float(np.mean(v)) for c, v in fit.items()}}
      cycle["kept"] = (survivors(cut_scores(cycle, cut_of(rc)), alive, rc.keep[i])
                       if i < len(rc.keep) else list(alive))
      log["cycles"].append(cycle)
      scores = cycle["scores"]
      if r.primary:
        files.write_json_atomic(path, log)
      r.logger.scalars(i + 1, {**{f"race/{c}": v for c, v in scores.items() if np.isfinite(v)},
                               **{f"race_train_loss/{c}": v for c, v in cycle["train_loss"].items()
                                  if np.isfinite(v)}})
    at = {(c, s): j * len(seeds) + k for j, c in enumerate(alive) for k, s in enumerate(seeds)}
    trained = {m: jax.tree.map(lambda v, i=i: np.asarray(v)[i], stacked) for m, i in at.items()}
    alive = log["cycles"][i]["kept"]
  return _found(cfg, cands, log, splits, time.perf_counter() - start, plan)


def _members(cfg, splits: data.Splits, alive: list[str], seeds: list[int],
             trained: dict) -> tuple[Any, dict]:
  """The graph whose slots switch over ``alive`` and each network's state in it: from its
  initialisation in the first cycle, else from its ``trained`` weights and running state
  (taken by name: a slot's parameters are named by their candidate), with a fresh optimizer
  and schedule (a warm restart)."""
  slot = models.switch_slots(alive, cfg.search.get("param_granularity") or
                             cfg.search.granularity)
  graphdef, inits = None, {}
  for s in seeds:
    graphdef, inits[s] = step.init_state(models.build(
        cfg.model, splits.input_shape, splits.num_outputs, slot, network.rngs(s)), None)
  members = {}
  for i, c in enumerate(alive):
    for s in seeds:
      state = inits[s]
      if trained:
        old = trained[c, s]
        state = state.replace(params=_by_name(state.params, old.params),
                              rest=_by_name(state.rest, old.rest))
      members[c, s] = _with_choice(state, i).replace(active=jnp.asarray(True))
  return graphdef, members


def _by_name(fresh, old):
  """``fresh``'s variables holding ``old``'s values at the same paths."""
  values = dict(nnx.to_flat_state(old))
  return nnx.from_flat_state([(p, v.replace(values[p][...])) for p, v in
                              nnx.to_flat_state(fresh)])


def _found(cfg, cands: list[str], log: dict, splits: data.Splits, seconds: float,
           plan: list[int]) -> Found:
  """The record's layers (the best network of the last cycle), rounds, cost."""
  rc = cfg.search.race
  last, rounds, epochs_run = {}, {}, {c: 0 for c in cands}
  for i, g in enumerate(log["cycles"]):
    for c, v in g["scores"].items():
      last[c], rounds[c] = v, i
      epochs_run[c] += g["epochs"]
  final = log["cycles"][-1]["scores"]
  best = max(final, key=lambda c: (_finite(final[c]), -cands.index(c)))
  steps = len(splits.x_train) // cfg.retrain.batch_size
  examples = sum(epochs_run.values()) * steps * cfg.retrain.batch_size * rc.seeds
  probe = models.build(cfg.model, splits.input_shape, splits.num_outputs,
                       models.uniform_slots(best), network.rngs(cfg.seed))
  layers = [{"name": n, "choice": best, "formula": activations.get(best).formula,
             "candidates": cands, "scores": {c: float(v) for c, v in last.items()},
             "params": {}} for n, _ in models.slots(probe)]
  by_loss = cut_of(rc) == "train_loss" and len(plan) > 1
  score_name = (("val accuracy" if splits.task == data.CLASSIFICATION else "minus val loss")
                + f" after the last cycle each candidate reached (cycles of "
                f"{plan} epochs, keeping {list(rc.keep)}"
                + (" by their loss on the train split" if by_loss else "")
                + f"), mean of {rc.seeds} seed{'s' if rc.seeds > 1 else ''}")
  info = {"method": "race", "score": score_name, "seconds": seconds, "rounds": rounds,
          "cycles": log["cycles"],
          "evaluated": [{"choices": {layer["name"]: c for layer in layers}, "score": v}
                        for c, v in last.items()]}
  key = "val_accuracy" if splits.task == data.CLASSIFICATION else "val_minus_loss"
  return Found(layers=layers, metrics={key: final[best]}, step=sum(plan),
               fields={"relaxation": None, "granularity": "layer", "discretize": "race",
                       "selection": info},
               cost={"examples": int(examples), "trainings": len(cands) * rc.seeds})


def budget_examples(cfg, n_train: int) -> int:
  """What a race of ``cfg`` spends in training examples, before it runs."""
  rc = cfg.search.race
  counts = [len(cfg.search.candidates), *rc.keep]
  steps = n_train // cfg.retrain.batch_size
  return sum(n * e for n, e in zip(counts, cycles(cfg))) * steps * cfg.retrain.batch_size \
      * rc.seeds


# cycles of `epochs`, `seeds` initialisations each; after each cycle but the last, the `keep`
# with the lowest loss on the train split go on from their weights; the last cycle's best on
# val is chosen (chosen against the truth: docs/yardstick.md)
STRATEGY = Strategy(run=run, check=check,
                    defaults={"epochs": [5, 10], "keep": [4], "seeds": 1, "cut": "train_loss"},
                    doc="the race: every candidate's network trained for a short cycle on "
                        "the train split, the best going on for longer cycles (successive "
                        "halving with warm restarts), the best chosen")
