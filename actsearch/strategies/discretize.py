r"""Discretization: a table of methods that turn a searched supernet into one choice per slot.

A method takes the slots of the supernet as ``SlotView``s (name, relaxed weights ``[K]`` or per
channel ``[C, K]``, candidate names, learned parameters of parametric candidates) and a
``Context`` of measurements it may ask for, and returns one ``architecture.json`` layer per
slot (each with the ``scores`` of its candidates) and a record of what it measured.
``search.discretize`` names the method.

* ``argmax``: the candidate with the largest relaxed weight (DARTS, Liu et al. 2019); with
  per-channel granularity, one argmax per channel, and the layer's ``choice`` is the argmax
  of the weights averaged over channels. Score: the weight.
* ``perturbation``: DARTS-PT (Wang et al. 2021, "Rethinking architecture selection in
  differentiable NAS"): for each slot and candidate k, the supernet's val loss with k removed
  (:math:`\alpha_k \to -\infty`); the candidate whose removal hurts most is chosen. Score: that
  loss. No fine-tuning between slots.
* ``shortlist``: the ``search.shortlist_k`` largest weights of each slot span a shortlist of
  discrete networks (at most ``search.shortlist_max``, those with the largest product of
  weights); each trains from scratch for ``search.shortlist_epochs`` epochs on the train split
  with the retrain recipe, all together, and is scored on the val split; the best one is chosen.
  Score of a candidate: the best val score of a shortlisted network that uses it. A validated
  version of what GRAFS' progressive shrinking and DARTS-PT approximate: the choice is made by
  networks as they will be retrained, not by the supernet.
* ``screen``: every candidate trained alone (in every slot) as a shortlisted network is, and
  scored on val; the ``search.shortlist_k`` best-screened candidates of each slot then span the
  shortlist, validated as above. The ranking a search over a large catalogue needs when the
  supernet's weights do not rank (``screen``'s docstring).

Both score a network by the ``mean`` or the ``best`` of its ``search.shortlist_seeds``
initialisations (``search.shortlist_reduce``) and, with ``search.simplest_within_se``, choose
by the one-standard-error rule (``choose``) rather than the best score.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from actsearch import models
from actsearch.errors import UserError
from actsearch.space import activations


@dataclasses.dataclass(frozen=True)
class SlotView:
  name: str
  weights: np.ndarray                  # [K] or [C, K]
  candidates: tuple[str, ...]
  params: dict[str, dict[str, np.ndarray]]

  @property
  def mean(self) -> np.ndarray:
    return self.weights.reshape(-1, len(self.candidates)).mean(0)


@dataclasses.dataclass
class Context:
  """Measurements a method may ask the search for."""
  # one choice per slot name, for each network -> (val scores, higher is better; seconds)
  train_and_score: Callable[[list[dict[str, str]]], tuple[list[float], float]] | None = None
  # {slot: removed candidate} -> the supernet's val loss with those candidates removed
  removal_loss: Callable[[dict[str, str]], float] | None = None
  score_name: str = ""                 # what ``train_and_score`` measures
  shortlist_k: int = 2
  shortlist_max: int = 16
  # {slot: candidate} -> the trained supernet's val score (higher is better) with those slots
  # pinned to those candidates, the others as they are
  pinned_score: Callable[[dict[str, str]], float] | None = None
  # what ``train_and_score`` spent so far: {"trainings": networks x seeds trained, "examples":
  # training examples passed}, the budget's units (``blackbox``)
  spent: dict = dataclasses.field(default_factory=dict)
  # a network trained by ``train_and_score`` -> the standard error of its score over its
  # initialisations (0 with one); with ``simplest_within_se`` the choice among trained
  # networks follows the one-standard-error rule (``choose``)
  standard_error: Callable[[dict[str, str]], float] | None = None
  simplest_within_se: bool = False


def slot_views(model) -> list[SlotView]:
  """The searchable slots of a supernet, with deterministic (unsampled) weights."""
  return [SlotView(name, np.asarray(slot.weights(None), np.float64),
                   tuple(c.name for c in slot.candidates),
                   jax.tree.map(np.asarray, slot.candidate_params()))
          for name, slot in models.slots(model)]


def _layer(view: SlotView, choice: str, scores: dict[str, float],
           channel_choices: Sequence[str] | None = None) -> dict[str, Any]:
  layer = {"name": view.name, "choice": choice, "formula": activations.get(choice).formula,
           "candidates": list(view.candidates),
           "weights": {c: float(w) for c, w in zip(view.candidates, view.mean)},
           "scores": {c: float(v) for c, v in scores.items()}}
  chosen = {choice}
  if channel_choices is not None:
    layer["channel_choices"] = list(channel_choices)
    chosen = set(channel_choices)
  layer["params"] = activations.params_to_record(
      {c: ps for c, ps in view.params.items() if c in chosen})
  return layer


def argmax(views: Sequence[SlotView], ctx: Context | None = None):
  """The largest relaxed weight of each slot (of each channel, with channel granularity)."""
  layers = []
  for view in views:
    choice = view.candidates[int(np.argmax(view.mean))]
    channels = None
    if view.weights.ndim == 2:
      channels = [view.candidates[int(i)] for i in np.argmax(view.weights, -1)]
    layers.append(_layer(view, choice, dict(zip(view.candidates, view.mean)), channels))
  return layers, {"method": "argmax", "score": "relaxed weight", "seconds": 0.0}


def perturbation(views: Sequence[SlotView], ctx: Context):
  """DARTS-PT: per slot, the candidate whose removal raises the supernet's val loss most."""
  start = time.perf_counter()
  layers = []
  for view in views:
    losses = {c: ctx.removal_loss({view.name: c}) for c in view.candidates}
    layers.append(_layer(view, max(losses, key=losses.get), losses))
  return layers, {"method": "perturbation", "score": "supernet val loss with it removed",
                  "seconds": time.perf_counter() - start,
                  "evaluated": sum(len(v.candidates) for v in views)}


def _span(views: Sequence[SlotView], tops: list[list[tuple[str, float]]],
          limit: int) -> list[dict[str, str]]:
  """The networks spanned by each slot's ``(candidate, value)`` tops, at most ``limit``, those
  with the largest sum of values first (ties: the order of the product)."""
  combos = [(sum(v for _, v in combo), i, combo)
            for i, combo in enumerate(itertools.product(*tops))]
  combos.sort(key=lambda t: (-t[0], t[1]))
  return [{v.name: c for v, (c, _) in zip(views, combo)} for _, _, combo in combos[:limit]]


def shortlist_of(views: Sequence[SlotView], k: int, limit: int) -> list[dict[str, str]]:
  """The networks spanned by the ``k`` largest weights of each slot, at most ``limit``, those
  with the largest product of weights first (ties: the order of the candidates)."""
  tops = []
  for view in views:
    order = np.argsort(-view.mean, kind="stable")[:k]
    tops.append([(view.candidates[i], float(np.log(max(view.mean[i], 1e-30)))) for i in order])
  return _span(views, tops, limit)


def shortlist(views: Sequence[SlotView], ctx: Context):
  """Trains the shortlisted discrete networks briefly; the best val score wins."""
  nets = shortlist_of(views, ctx.shortlist_k, ctx.shortlist_max)
  scores, seconds = ctx.train_and_score(nets)
  best, simpler = choose(views, nets, scores, ctx)  # first of equals: the larger weights
  layers = []
  for view in views:
    per_cand: dict[str, float] = {}
    for net, s in zip(nets, scores):
      c = net[view.name]
      per_cand[c] = max(per_cand.get(c, -np.inf), s)
    layers.append(_layer(view, nets[best][view.name], per_cand))
  return layers, {"method": "shortlist", "score": ctx.score_name, "seconds": seconds,
                  "evaluated": [{"choices": net, "score": float(s)}
                                for net, s in zip(nets, scores)],
                  **({"simpler": simpler} if simpler else {})}


def screened_shortlist(views: Sequence[SlotView], screen: dict[str, float], k: int,
                       limit: int) -> list[dict[str, str]]:
  """The networks spanned by the ``k`` candidates of each slot with the best screen scores
  (ties: the larger weight), at most ``limit``, those with the largest sum of scores first."""
  return scored_shortlist(views, {v.name: screen for v in views}, k, limit)


def scored_shortlist(views: Sequence[SlotView], scores: dict[str, dict[str, float]], k: int,
                     limit: int) -> list[dict[str, str]]:
  """As ``screened_shortlist`` with each slot's own scores (``scores[slot][candidate]``)."""
  tops = []
  for view in views:
    own = scores[view.name]
    order = sorted(range(len(view.candidates)),
                   key=lambda i: (-own[view.candidates[i]], -view.mean[i], i))[:k]
    tops.append([(view.candidates[i], own[view.candidates[i]]) for i in order])
  return _span(views, tops, limit)


def activation_parameters(views: Sequence[SlotView], net: dict[str, str]) -> int:
  """How many learned activation parameters ``net`` holds: the sizes of its candidates'
  parameters in the supernet (per layer or per channel, as searched); 0 for fixed ones."""
  return sum(int(np.size(p)) for v in views if v.name in net
             for p in v.params.get(net[v.name], {}).values())


def choose(views: Sequence[SlotView], nets: Sequence[dict[str, str]], scores: Sequence[float],
           ctx: Context) -> tuple[int, dict | None]:
  """The index of the chosen network among trained ``nets`` and, when the one-standard-error
  rule made the choice, what it weighed.

  Without ``ctx.simplest_within_se``: the best score (first of equals). With it, the
  one-standard-error rule (Breiman et al. 1984, *Classification and Regression Trees*;
  Hastie, Tibshirani & Friedman 2009, *The Elements of Statistical Learning*, sec. 7.10):
  with :math:`b` the best network and :math:`SE_b` the standard error of its score over its
  initialisations, every network scoring at least :math:`s_b - SE_b` is as good as the
  measurement can tell, and the simplest of them, the fewest learned activation parameters
  (``activation_parameters``; then the better score), is chosen. A learned shape (PAU's ten
  coefficients) can fit what a fixed candidate fits; it is chosen only when it fits
  measurably better."""
  finite = [_finite(s) for s in scores]
  best = int(np.argmax(finite))
  if not ctx.simplest_within_se or ctx.standard_error is None or not np.isfinite(finite[best]):
    return best, None
  se = ctx.standard_error(nets[best])
  floor = finite[best] - se
  sizes = [activation_parameters(views, n) for n in nets]
  within = [i for i, s in enumerate(finite) if s >= floor]
  chosen = min(within, key=lambda i: (sizes[i], -finite[i], i))
  if chosen == best:
    return best, None
  return chosen, {"rule": "one standard error", "best": dict(nets[best]),
                  "best_score": finite[best], "standard_error": se,
                  "best_parameters": sizes[best], "parameters": sizes[chosen]}


def _finite(score: float) -> float:
  """A diverged network's score (NaN or -inf) as -inf: it ranks last."""
  return score if np.isfinite(score) else -np.inf


def uniform_network(views: Sequence[SlotView], cand: str) -> dict[str, str]:
  """``cand`` in every slot that has it; a slot without it keeps its largest weight."""
  return {v.name: cand if cand in v.candidates else v.candidates[int(np.argmax(v.mean))]
          for v in views}


def screen(views: Sequence[SlotView], ctx: Context):
  """Screens every candidate alone, then validates a shortlist of the best screened ones.

  1. Screen: for each candidate, the network with it in every slot (``uniform_network``)
     trains from scratch as a shortlisted network does and is scored on val; each computes
     only its own activation, so K candidates cost K short trainings.
  2. Shortlist: the ``shortlist_k`` best-screened candidates of each slot span at most
     ``shortlist_max`` networks (``screened_shortlist``); those not screened already train
     the same way, and the best val score of all wins.

  The supernet's weights only break ties: on MNIST-1D they rank candidates by how well they
  serve a mixture early in training, not by how a network with them generalises (the log in
  docs/choosing-defaults.md). Score of a candidate: its screen score.
  """
  start = time.perf_counter()
  cands = list(dict.fromkeys(c for v in views for c in v.candidates))
  trained: dict[tuple[str, ...], float] = {}
  names = [v.name for v in views]
  key = lambda net: tuple(net[n] for n in names)  # noqa: E731
  screen_scores = {}
  for cand in cands:  # one network per call: its own graph, only its own activation
    net = uniform_network(views, cand)
    if key(net) not in trained:
      [score], _ = ctx.train_and_score([net])
      trained[key(net)] = score
    screen_scores[cand] = trained[key(net)]
  ranked = {c: _finite(s) for c, s in screen_scores.items()}
  nets = screened_shortlist(views, ranked, ctx.shortlist_k, ctx.shortlist_max)
  todo = [n for n in nets if key(n) not in trained]
  if todo:
    scores, _ = ctx.train_and_score(todo)
    trained.update({key(n): s for n, s in zip(todo, scores)})
  # first of equals: the best screened
  at, simpler = choose(views, nets, [trained[key(n)] for n in nets], ctx)
  best = nets[at]
  layers = [_layer(v, best[v.name], {c: screen_scores[c] for c in v.candidates}) for v in views]
  evaluated = [{"choices": dict(zip(names, k)), "score": float(s)} for k, s in trained.items()]
  return layers, {"method": "screen", "score": ctx.score_name,
                  "seconds": time.perf_counter() - start, "evaluated": evaluated,
                  "screened": len(cands), "shortlisted": len(nets),
                  **({"simpler": simpler} if simpler else {})}


def pinned(views: Sequence[SlotView], ctx: Context):
  """Random activation's choice (``random_activation``): the activation that serves each slot
  best in the trained supernet, then validated by the shortlist.

  1. The supernet (trained with a random draw per step) scored on val with slots pinned
     (``Context.pinned_score``): every combination when there are at most
     ``shortlist_max`` (a candidate's score: the best combination that holds it), otherwise
     slot by slot, the other slots as trained (their expected weights: the uniform mixture).
  2. The ``shortlist_k`` best of each slot span at most ``shortlist_max`` networks, trained
     from scratch and scored on val as DARTS' shortlist; the best wins.
  """
  start = time.perf_counter()
  names = [v.name for v in views]
  scores: dict[str, dict[str, float]] = {n: {} for n in names}
  combos = list(itertools.product(*[v.candidates for v in views]))
  if len(combos) <= ctx.shortlist_max:
    for combo in combos:
      value = _finite(ctx.pinned_score(dict(zip(names, combo))))
      for n, c in zip(names, combo):
        scores[n][c] = max(scores[n].get(c, -np.inf), value)
    jointly = True
  else:
    for view in views:
      for c in view.candidates:
        scores[view.name][c] = _finite(ctx.pinned_score({view.name: c}))
    jointly = False
  nets = scored_shortlist(views, scores, ctx.shortlist_k, ctx.shortlist_max)
  trained, _ = ctx.train_and_score(nets)
  best = nets[int(np.argmax([_finite(t) for t in trained]))]
  layers = [_layer(v, best[v.name], scores[v.name]) for v in views]
  for layer in layers:  # alpha never moved: its uniform weights would only mislead
    del layer["weights"]
  return layers, {"method": "pinned", "score": ctx.score_name,
                  "pinned": "every combination" if jointly else "slot by slot",
                  "seconds": time.perf_counter() - start,
                  "evaluated": [{"choices": n, "score": float(t)} for n, t in zip(nets, trained)],
                  "shortlisted": len(nets)}


METHODS: dict[str, Callable] = {"argmax": argmax, "perturbation": perturbation,
                                "shortlist": shortlist, "screen": screen, "pinned": pinned}


def get(name: str):
  if name not in METHODS:
    raise UserError(f"search.discretize is {name!r}; known: {', '.join(METHODS)}")
  return METHODS[name]
