"""The measurements discretization methods ask of a search (``discretize.Context``).

* ``removal_loss``: the supernet's val loss with some candidates removed. A candidate is
  removed by pinning its alpha to ``-PIN``: every relaxation then gives it weight 0 (softmax,
  Gumbel and Dirichlet renormalise the others; sigmoid leaves them as they are). Batch norm's
  running averages are recalibrated for the network so pinned (``batchstats``), here and in
  ``pinned_score``.
* ``train_and_score``: discrete networks trained from scratch on the train split and scored
  on the val split. Each is the supernet with every slot pinned to one candidate (alpha
  ``+PIN`` for it, ``-PIN`` for the others: weight exactly 1 and 0 under every relaxation;
  without normalisation or clamping), so all share one compiled step and train together under
  ``jax.vmap`` (the shared trainer), from the search's initial weights, with the retrain
  recipe for ``search.shortlist_epochs`` epochs. Checkpoints go to ``WORKDIR/selection/KEY``
  (keyed by the networks trained), so an interrupted selection resumes.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import numpy as np
from flax import nnx

from actsearch import data, models
from actsearch.errors import UserError
from actsearch.models.network import split_model
from actsearch.strategies import curves, discretize
from actsearch.train import batchstats, trainer
from actsearch.train import step as train_step
from actsearch.train.objective import Objective

PIN = 1e4


def _with_alpha(graphdef, state, pins: dict[str, dict[str, float]]):
  """A copy of ``state.arch`` with the alpha of candidate c in slot s set to ``pins[s][c]``
  (``nnx.merge`` shares variables with the state it merges, so it merges copies)."""
  copy = lambda tree: jax.tree.map(np.array, tree)
  model = nnx.merge(graphdef, state.params, copy(state.arch), state.rest)
  for name, slot in models.slots(model):
    if name in pins:
      names = [c.name for c in slot.candidates]
      alpha = np.array(slot.alpha[...])
      for cand, value in pins[name].items():
        alpha[..., names.index(cand)] = value
      slot.alpha[...] = alpha
  return copy(split_model(model)[2])


def alive_after(epoch: int, k: int, epochs: int, until: float) -> int:
  """Progressive shrinking's schedule: candidates left per slot after ``epoch``; one is left
  from epoch ``ceil(until * epochs)`` on, the others dropped evenly before."""
  last = max(1, int(np.ceil(until * epochs)))
  return max(1, k - ((k - 1) * epoch) // last)


def shrink(graphdef, state, keep: int):
  r"""Progressive shrinking (GRAFS, Strack et al. 2024): in every slot, the candidates with the
  smallest weights are removed (alpha pinned to ``-PIN``, weight 0 from then on) until ``keep``
  are left. When one is left, the supernet is the discrete network: no discretization gap.
  Returns the state, with its alpha optimizer state untouched (the removed candidates' alpha
  gets no gradient)."""
  model = nnx.merge(graphdef, state.params, jax.tree.map(np.array, state.arch), state.rest)
  pins = {}
  for view, (name, slot) in zip(discretize.slot_views(model), models.slots(model)):
    alpha = np.asarray(slot.alpha[...]).reshape(-1, len(view.candidates)).mean(0)
    alive = [i for i in np.argsort(-view.mean, kind="stable") if alpha[i] > -PIN / 2]
    if len(alive) > keep:
      pins[name] = {view.candidates[i]: -PIN for i in alive[keep:]}
  if not pins:
    return state
  return state.replace(arch=_with_alpha(graphdef, state, pins))


def context(su, state, workdir: str, plain: Callable[..., nnx.Module],
            progress: bool = False) -> discretize.Context:
  """``plain(seed, only=None)``: the supernet initialised with ``seed``, without the
  stabilisers that change what a slot computes, so that a pinned slot is exactly one
  candidate; ``only`` (``{slot: candidates}``) restricts the slots it names."""
  cfg, splits = su.cfg, su.splits
  classification = splits.task == data.CLASSIFICATION
  curve = bool(cfg.search.get("learning_curve", False))
  reduce = cfg.search.get("shortlist_reduce", "mean")
  seed_scores: dict[tuple, list[float]] = {}  # a network's val score per initialisation
  spent = {"trainings": 0, "examples": 0}

  slot_cands = {v.name: v.candidates for v in discretize.slot_views(su.model)}

  def supernet_val(pins: dict[str, dict[str, float]]) -> dict:
    """The trained supernet scored on val with some alphas pinned (``_with_alpha``), its
    batch statistics recalibrated for the pinned network (``batchstats``)."""
    arch = _with_alpha(su.graphdef, state, pins)
    rest = batchstats.recalibrate(su.graphdef, state.params, arch, state.rest, splits.x_train,
                                  cfg.search.batch_size, cfg.seed, inputs=splits.inputs)
    return trainer.score(su.objective, _stacked(state.replace(arch=arch, rest=rest)),
                         splits.x_val, splits.y_val, cfg.search.eval_batch_size, "val")

  def removal_loss(removed: dict[str, str]) -> float:
    return float(supernet_val({s: {c: -PIN} for s, c in removed.items()})["val/loss"][0])

  def pinned_score(net: dict[str, str]) -> float:
    out = supernet_val({s: {c: (PIN if c == choice else -PIN) for c in slot_cands[s]}
                        for s, choice in net.items()})
    return float(out["val/accuracy"][0] if classification else -out["val/loss"][0])

  def train_and_score(nets: list[dict[str, str]]) -> tuple[list[float], float]:
    n = len(splits.x_train)
    if not curve:
      return fit_and_score(nets, n)
    sizes = curves.sizes(n)
    if sizes[0] < cfg.retrain.batch_size:
      raise UserError(f"search.learning_curve trains on {sizes[0]} of the {n} train examples, "
                      f"fewer than one batch (retrain.batch_size {cfg.retrain.batch_size})")
    at = [fit_and_score(nets, m) for m in sizes]
    beyond = (n + len(splits.x_val)) / n  # the retrain trains on train + val
    scores = [curves.extrapolate([a[0][i] for a in at], curves.RATIO, beyond)
              for i in range(len(nets))]
    return scores, sum(a[1] for a in at)

  def fit_and_score(nets: list[dict[str, str]], n: int) -> tuple[list[float], float]:
    """The networks trained on the first ``n`` examples of the train split, scored on val."""
    seeds = [cfg.seed + j for j in range(cfg.search.shortlist_seeds)]
    # each slot holds only the candidates some network takes there: with the whole catalogue
    # searched, a shortlisted network computes its own activations, not 80 pinned to zero
    order = {v.name: v.candidates for v in discretize.slot_views(su.model)}
    only = {name: [c for c in cands if any(net.get(name) == c for net in nets)]
            for name, cands in order.items() if any(name in net for net in nets)}
    inits = [train_step.init_state(plain(seed, only), None) for seed in seeds]
    graphdef = inits[0][0]
    views = {v.name: v.candidates for v in discretize.slot_views(plain(cfg.seed, only))}
    members = []
    for net in nets:
      pins = {s: {c: (PIN if c == net[s] else -PIN) for c in views[s]} for s in net}
      members += [init.replace(arch=_with_alpha(graphdef, init, pins)) for _, init in inits]
    objective = Objective.of(graphdef, splits)
    stacked = trainer.stack(members)
    r = cfg.retrain.copy_and_resolve_references()
    r.epochs = cfg.search.shortlist_epochs
    try:
      trained, seconds = trainer.fit(r, objective, stacked, splits.x_train[:n],
                                     splits.y_train[:n],
                                     os.path.join(workdir, "selection"), seeds * len(nets),
                                     [f"{network_label(net)}/seed{s}" for net in nets
                                      for s in seeds],
                                     progress=progress,
                                     desc=f"{len(nets)} network{'s' if len(nets) > 1 else ''}"
                                          f" on {n} examples",
                                     resident_mb=cfg.data.resident_mb)
    except FloatingPointError:
      # a network whose loss is not finite (cosh alone overflows at once) scores -inf; the
      # others of its batch train again one by one (their runs keyed apart from the batch's)
      if len(nets) == 1:
        return [-np.inf], 0.0
      alone = [fit_and_score([net], n) for net in nets]
      return [a[0][0] for a in alone], sum(a[1] for a in alone)
    spent["trainings"] += len(members)
    spent["examples"] += len(members) * training_examples(cfg, n)
    out = trainer.score(objective, trained, splits.x_val, splits.y_val,
                        cfg.search.eval_batch_size, "val")
    scores = out["val/accuracy"] if classification else -out["val/loss"]
    per_seed = np.asarray(scores).reshape(len(nets), len(seeds))  # float32, as before
    for net, row in zip(nets, per_seed):
      seed_scores[network_key(net)] = [float(v) for v in row]
    return [reduce_seeds(row, reduce) for row in per_seed], seconds

  def standard_error(net: dict[str, str]) -> float:
    return seed_error(seed_scores.get(network_key(net), []))

  return discretize.Context(
      train_and_score=train_and_score, removal_loss=removal_loss, pinned_score=pinned_score,
      score_name=(("val accuracy" if classification else "minus val loss")
                  + f" after {cfg.search.shortlist_epochs} epochs from scratch"
                  + (f", {REDUCE_TEXT[reduce]} {cfg.search.shortlist_seeds} seeds"
                     if cfg.search.shortlist_seeds > 1 else "")
                  + (", extrapolated to train + val from 1/4, 1/2 and all of train "
                     "(learning curve)" if curve else "")),
      shortlist_k=cfg.search.shortlist_k, shortlist_max=cfg.search.shortlist_max, spent=spent,
      standard_error=standard_error,
      simplest_within_se=bool(cfg.search.get("simplest_within_se", False)))


REDUCE_TEXT = {"mean": "mean of", "best": "best of"}


def network_label(net: dict[str, str]) -> str:
  """A network's name for its TensorBoard run: its candidate where every slot holds the same
  one (``pau``), else ``slot=candidate`` pairs (``block0.act=pau,block1.act=gelu``)."""
  if len(set(net.values())) == 1:
    return next(iter(net.values()))
  return ",".join(f"{slot.replace('/', '.')}={c}" for slot, c in net.items())


def network_key(net: dict[str, str]) -> tuple:
  return tuple(sorted(net.items()))


def reduce_seeds(scores, reduce: str) -> float:
  """A network's score from its initialisations' val scores (higher is better): their
  ``mean`` (what a retrain over seeds expects; one diverged start makes it -inf), or the
  ``best`` (restarts, as k-means' ``n_init`` keeps the best fit: what the architecture can
  reach, not how often its training gets there; the diverged starts are ignored)."""
  scores = np.asarray(scores)  # the mean in the scores' own precision
  if reduce == "best":
    finite = scores[np.isfinite(scores)]
    return float(finite.max()) if finite.size else -np.inf
  return float(scores.mean())


def seed_error(scores) -> float:
  """The standard error of a network's score, :math:`s / \\sqrt{n}` with :math:`s` the sample
  standard deviation of its ``n`` initialisations' finite val scores; 0 for fewer than two."""
  scores = np.asarray(scores, np.float64)
  scores = scores[np.isfinite(scores)]
  return float(scores.std(ddof=1) / np.sqrt(scores.size)) if scores.size > 1 else 0.0


def training_examples(cfg, n: int) -> int:
  """Examples one short training of ``n`` train examples passes: ``search.shortlist_epochs``
  epochs of ``n // retrain.batch_size`` whole batches."""
  return cfg.search.shortlist_epochs * (n // cfg.retrain.batch_size) * cfg.retrain.batch_size


def network_examples(cfg, n: int) -> int:
  """Examples one network's score costs: a training per seed (``search.shortlist_seeds``), on
  1/4, 1/2 and all of the train split with the learning curve."""
  sizes = curves.sizes(n) if cfg.search.get("learning_curve", False) else [n]
  return cfg.search.shortlist_seeds * sum(training_examples(cfg, m) for m in sizes)


def _stacked(state):
  """A one-member stack of a search state's model variables, for ``trainer.score``."""
  return trainer.stack([train_step.TrainState(step=state.step, params=state.params,
                                              arch=state.arch, rest=state.rest, opt=None)])
