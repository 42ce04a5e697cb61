"""What the black-box strategies share: the space of discrete networks, one evaluation cache
with its budget, and their run on the engine (``random``, ``evolution``, ``reinforce``).

A black-box strategy proposes discrete networks (one candidate per slot), has each trained
from scratch with the retrain recipe for ``search.shortlist_epochs`` epochs on the train split
(the shared trainer: the networks of one proposal train together in one compiled program,
each computing only its own activations) and scored on val, as DARTS' shortlist scores its
networks; it returns the best network it evaluated.

**Budget** (``search.budget``): training examples passed, the unit every strategy is counted
in. One short training costs ``shortlist_epochs * steps * retrain.batch_size`` examples (per
seed of ``search.shortlist_seeds``); a strategy evaluates ``budget // that`` distinct networks.
A network proposed again is taken from the cache: not trained, not counted (the record says
how many proposals the cache answered). Unset, the budget is what the default DARTS search of
the same config spends (``costs``).

**Resume**: the algorithms are deterministic given their seed and the scores they are told, so
a run replays itself: every evaluated network and its score is written to
``WORKDIR/evaluations.json`` (atomically, after each proposal), a resumed run proposes the same
networks and takes their scores from that file, and the training in progress when the run was
killed resumes from its checkpoint. The population, the controller, the baseline are rebuilt
exactly, so a resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence

import ml_collections
import numpy as np

from actsearch import data
from actsearch.errors import UserError
from actsearch.space import activations
from actsearch.strategies import selection, supernet
from actsearch.strategies.base import Found, Spend, Strategy
from actsearch.train import files

Net = tuple[int, ...]  # one candidate index per slot
HISTORY_FILE = "evaluations.json"


@dataclasses.dataclass(frozen=True)
class Space:
  """The discrete networks: one of ``candidates[i]`` in slot ``names[i]``."""
  names: tuple[str, ...]
  candidates: tuple[tuple[str, ...], ...]

  @property
  def size(self) -> int:
    return int(np.prod([len(c) for c in self.candidates]))

  def random(self, rng: np.random.Generator) -> Net:
    return tuple(int(rng.integers(len(c))) for c in self.candidates)

  def choices(self, net: Net) -> dict[str, str]:
    return {n: c[i] for n, c, i in zip(self.names, self.candidates, net)}

  def index(self, choices: dict[str, str]) -> Net:
    return tuple(c.index(choices[n]) for n, c in zip(self.names, self.candidates))


class OutOfBudget(Exception):
  """The budget allows no further distinct network."""


class Evaluations:
  """The cache of evaluated networks, with the budget in distinct trainings.

  ``evaluate(nets)`` returns each network's val score (higher is better): those seen before
  from the cache, the others trained by ``train(list of networks) -> scores`` together, as
  many as the budget allows in first-proposed order; once it allows none, it raises
  ``OutOfBudget`` (the networks it could still train are kept). ``known``: scores from an
  interrupted run (``{net: score}``), answered as the cache answers but counted as trained
  (they were, in the run that is resumed), so a resumed run spends what an uninterrupted one
  does. ``on_new(net, score)`` is called for each network trained, in order.
  """

  def __init__(self, train: Callable[[list[Net]], Sequence[float]], trainings: int,
               known: dict[Net, float] | None = None,
               on_new: Callable[[Net, float], None] = lambda net, score: None):
    self.train, self.trainings, self.on_new = train, trainings, on_new
    self.known = dict(known or {})
    self.scores: dict[Net, float] = {}  # in the order they were trained
    self.proposals = 0
    self.cached = 0

  @property
  def left(self) -> int:
    return self.trainings - len(self.scores)

  def evaluate(self, nets: Sequence[Net]) -> list[float]:
    new = [n for n in dict.fromkeys(nets) if n not in self.scores]
    if new and self.left <= 0:
      raise OutOfBudget
    new = new[:self.left]
    fresh = [n for n in new if n not in self.known]
    trained = dict(zip(fresh, self.train(fresh))) if fresh else {}
    for net in new:
      score = self.known[net] if net in self.known else float(trained[net])
      self.scores[net] = score
      self.on_new(net, score)
    out, first = [], set(new)
    for net in nets:
      if net not in self.scores:  # past the budget
        raise OutOfBudget
      self.proposals += 1
      if net in first:  # its first proposal trained it
        first.discard(net)
      else:
        self.cached += 1
      out.append(self.scores[net])
    return out

  def best(self) -> tuple[Net, float]:
    """The best network evaluated (the first of equals)."""
    net = max(self.scores, key=lambda n: finite(self.scores[n]))
    return net, self.scores[net]


def finite(score: float) -> float:
  return score if np.isfinite(score) else -np.inf


def regret(evals: Evaluations, best_possible: float) -> float:
  """``best_possible`` minus the best score found (0: the best network was found)."""
  return best_possible - evals.best()[1]


# --- the run on the engine ---------------------------------------------------------------

def history(workdir: str, space: Space) -> dict[Net, float]:
  """The networks an interrupted run evaluated, with their scores (empty for a new run)."""
  path = os.path.join(workdir, HISTORY_FILE)
  if not os.path.exists(path):
    return {}
  rows = files.read_json(path).get("evaluated", [])
  try:
    return {space.index(r["choices"]): float(r["score"]) for r in rows}
  except (KeyError, ValueError, TypeError) as e:
    raise UserError(f"{path} does not list networks of this search ({e}); use a new workdir "
                    "or delete it") from None


def layers(space: Space, evals: Evaluations, best: Net) -> list[dict]:
  """The record's layers: the chosen candidate of each slot; a candidate's score is the best
  score of an evaluated network that uses it there (candidates never evaluated have none)."""
  out = []
  for s, (name, cands) in enumerate(zip(space.names, space.candidates)):
    scores: dict[str, float] = {}
    for net, score in evals.scores.items():
      c = cands[net[s]]
      scores[c] = max(scores.get(c, -np.inf), finite(score))
    choice = cands[best[s]]
    out.append({"name": name, "choice": choice, "formula": activations.get(choice).formula,
                "candidates": list(cands),
                "scores": {c: float(v) for c, v in scores.items()}, "params": {}})
  return out


def evaluated(space: Space, evals: Evaluations) -> list[dict]:
  return [{"choices": space.choices(n), "score": float(s)} for n, s in evals.scores.items()]


def save_history(workdir: str, space: Space, evals: Evaluations, primary: bool) -> None:
  if primary:
    files.write_json_atomic(os.path.join(workdir, HISTORY_FILE),
                            {"evaluated": evaluated(space, evals)})


@dataclasses.dataclass
class Outcome:
  """What a black-box run did, for the record."""
  evals: Evaluations
  seconds: float
  progress: list[tuple[int, float]]  # (distinct trainings so far, best score so far)


def drive(search: Callable[[Evaluations], None], space: Space, train, trainings: int,
          workdir: str, primary: bool, logger=None, examples_per_training: float = 1.0
          ) -> Outcome:
  """Runs ``search(evals)`` (an algorithm, until it returns or the budget ends) with the cache
  of ``workdir``: history written after every trained network, TensorBoard's
  ``blackbox/best_score`` and ``blackbox/score`` against examples spent."""
  progress: list[tuple[int, float]] = []
  best = [-np.inf]

  def on_new(net: Net, score: float) -> None:
    best[0] = max(best[0], finite(score))
    progress.append((len(evals.scores), best[0]))
    save_history(workdir, space, evals, primary)
    if logger is not None:
      spent = int(len(evals.scores) * examples_per_training)
      logger.scalars(spent, {"blackbox/score": score, "blackbox/best_score": best[0]})

  evals = Evaluations(train, trainings, history(workdir, space), on_new)
  if logger is not None:
    logger.resume_at(0)  # a resumed run logs its replayed networks again, the same
  start = time.perf_counter()
  try:
    search(evals)
  except OutOfBudget:
    pass
  if not evals.scores:
    raise UserError("the budget allows no training: raise search.budget")
  return Outcome(evals, time.perf_counter() - start, progress)


# --- a black-box strategy as an entry of the strategy table --------------------------------

def budget(cfg, su) -> tuple[int, int]:
  """(examples one evaluated network costs, distinct networks the budget allows):
  ``search.budget`` examples, unset the default DARTS search's (``supernet.default_examples``)."""
  per = selection.network_examples(cfg, len(su.splits.x_train))
  total = cfg.search.get("budget")
  total = supernet.default_examples(su) if total is None else total
  return per, int(total // per)


def check_keys(cfg, name: str) -> None:
  """DARTS' keys (its setup builds the supernet), ``search.budget`` and the strategy's own
  ``search.<name>.*``: positive numbers, counts whole, a decay below 1."""
  supernet.check(cfg)
  b = cfg.search.get("budget")
  if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or b <= 0):
    raise UserError(f"search.budget must be a positive number of training examples, got {b!r}")
  for key, v in (cfg.search.get(name) or {}).items():
    whole = key in ("batch", "population", "sample")
    if isinstance(v, bool) or not isinstance(v, int if whole else (int, float)) or v <= 0 or (
        key == "baseline_decay" and v >= 1):
      raise UserError(f"search.{name}.{key} must be a positive "
                      + ("integer" if whole else "number")
                      + (" below 1" if key == "baseline_decay" else "") + f", got {v!r}")


def spend(cfg: ml_collections.ConfigDict, given: Spend) -> None:
  """``actsearch compare``'s rule: ``search.budget`` = ``scale`` x the reference's examples (a
  space smaller than the budget is evaluated whole and the search ends there)."""
  cfg.search.budget = int(round(given.scale * given.examples))


def make(name: str, search: Callable, doc: str, defaults: dict | None = None):
  """The ``Strategy`` of a black-box ``search(space, evals, seed, **keys)`` (``keys``: its
  ``defaults``, the config's ``search.<name>``): the supernet's setup (from which each
  evaluated network is pinned as the shortlist pins it), the budget, the cache, the record."""

  def run(r) -> Found:
    su, cfg = r.setup, r.cfg
    views = supernet.slot_views_of(su)
    space = Space(tuple(v.name for v in views), tuple(tuple(v.candidates) for v in views))
    ctx = supernet.measurements(su, su.state, r.workdir, r.progress)
    per, trainings = budget(cfg, su)
    own = dict(cfg.search.get(name) or {})
    out = drive(lambda evals: search(space, evals, cfg.seed, **own), space,
                lambda nets: ctx.train_and_score([space.choices(n) for n in nets])[0],
                trainings, r.workdir, r.primary, r.logger, per)
    best, score = out.evals.best()
    n = len(out.evals.scores)
    info = {"method": name, "score": ctx.score_name, "seconds": out.seconds,
            "evaluated": evaluated(space, out.evals), "proposals": out.evals.proposals,
            "cached": out.evals.cached, "space": space.size,
            # fewer than the budget allows: it proposed only networks it had seen
            "converged": n < min(trainings, space.size)}
    score_key = "val_accuracy" if su.splits.task == data.CLASSIFICATION else "val_minus_loss"
    return Found(layers=layers(space, out.evals, best), metrics={score_key: score}, step=n,
                 fields={"relaxation": None, "granularity": "layer", "discretize": name,
                         "selection": info},
                 cost={"examples": n * per, "budget": trainings * per, "trainings": n,
                       "cached": out.evals.cached})

  return Strategy(setup=supernet.setup, run=run, check=lambda cfg: check_keys(cfg, name),
                  doc=doc, defaults=defaults, budget=spend)
