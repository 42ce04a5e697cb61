r"""Dynamic adjustment by correlation (``search.strategy=correlation``): train with an initial
activation, measure for each slot the Pearson correlation :math:`r` between its input and its
output, adjust, continue training from the current weights; repeat.

Two forms (``search.correlation.form``), implemented as the rule is stated:

* ``parameter``: every slot holds ``search.correlation.activation``, a candidate with one
  parameter :math:`w` (``prelu``'s slope, ``swish_beta``'s beta, or any one-parameter
  candidate), which the rule sets after each round as :math:`w = w_0 + k\,r` (:math:`w_0` the
  parameter's initial value, :math:`k` = ``search.correlation.gain``). A parameter the rule
  sets is not trained by the optimizer (its lr is 0 in every round; the record's retrain
  recipe keeps it: ``retrain.init_params`` searched, ``retrain.act_lr_scale`` 0).
* ``switch``: every slot starts with ``search.correlation.activation`` and after each round
  takes ``sigmoid`` where :math:`r >` ``above`` (0.5), ``tanh`` where :math:`r <` ``below``
  (-0.5), ``relu`` otherwise. With standard normal inputs :math:`r` is about 0.86 for relu,
  0.96 for tanh and 0.99 for sigmoid, so this form tends to sigmoid and stays there: the
  record says what it did.

Definitions the statement leaves open, decided here: :math:`r` of a slot is the mean over its
units (a dense layer's features; a convolution's channels, over batch and positions) of the
Pearson correlation over the first ``search.correlation.val_batch`` examples of the val split
(a fixed batch), a unit whose input or output has zero variance counting as :math:`r = 0`.
Round 0 trains ``search.correlation.round_epochs`` epochs with the initial activation; each
of at most ``search.correlation.rounds`` rounds then adjusts and trains as long again (the
weights carried over, the optimizer and its schedule restarted: a round is one retrain-recipe
run). It stops early when the form has settled: every :math:`|w_{new} - w|` below
``search.correlation.tolerance`` (``parameter``), or no slot switched (``switch``). Each
round is one run of the shared trainer keyed by what it trains, so a killed search resumes.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from actsearch import data, models
from actsearch.errors import UserError
from actsearch.models import network
from actsearch.space import activations
from actsearch.space.mixed import Slot, capturing
from actsearch.strategies.base import Found, Run, Spend, Strategy
from actsearch.train import trainer
from actsearch.train.objective import Objective

FORMS = ("parameter", "switch")
SWITCH_TARGETS = ("sigmoid", "tanh", "relu")  # r > above, r < below, otherwise


def pearson(x: jax.Array, y: jax.Array) -> jax.Array:
  r"""Mean over units (the last axis) of :math:`r = \mathrm{cov}(x, y) / (\sigma_x \sigma_y)`
  over every other axis (batch, positions); a unit of zero variance counts as 0."""
  x = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
  y = y.reshape(-1, y.shape[-1]).astype(jnp.float32)
  dx, dy = x - x.mean(0), y - y.mean(0)
  sxy, sxx, syy = (dx * dy).mean(0), (dx * dx).mean(0), (dy * dy).mean(0)
  ok = (sxx > 0) & (syy > 0)
  r = jnp.where(ok, sxy / jnp.sqrt(jnp.where(ok, sxx * syy, 1.0)), 0.0)
  return r.mean()


def adjusted(w0: float, gain: float, r: float) -> float:
  """The parameter form's rule: w = w0 + k r."""
  return float(w0 + gain * r)


def switched(r: float, above: float = 0.5, below: float = -0.5) -> str:
  """The switching form's rule: sigmoid above, tanh below, relu between."""
  return "sigmoid" if r > above else "tanh" if r < below else "relu"


def moved_parameter(name: str) -> tuple[str, float]:
  """The parameter the rule moves and its initial value: the candidate's one parameter."""
  cand = activations.get(name)
  if len(cand.params) != 1 or cand.init is not None:
    raise UserError(f"search.correlation.activation {name!r} must be a candidate with one "
                    "parameter and a fixed initial value (prelu, swish_beta, ...)")
  (pname, value), = cand.params.items()
  if np.shape(value) != ():
    raise UserError(f"search.correlation.activation {name!r}: its parameter {pname!r} is not "
                    "a single number")
  return pname, float(value)


def check(cfg) -> None:
  c = cfg.search.correlation
  if c.form not in FORMS:
    raise UserError(f"search.correlation.form is {c.form!r}; known: {', '.join(FORMS)}")
  activations.require([c.activation], cfg.get("code") or [], "search.correlation.activation")
  if c.form == "parameter":
    moved_parameter(c.activation)
  for key in ("rounds", "round_epochs", "val_batch"):
    if isinstance(c[key], bool) or not isinstance(c[key], int) or c[key] < 1:
      raise UserError(f"search.correlation.{key} must be a positive integer, got {c[key]!r}")
  if c.tolerance < 0 or not c.below <= c.above:
    raise UserError("search.correlation.tolerance must be >= 0 and below <= above")


def _layers(names, choices: dict[str, str], params: dict[str, dict]) -> dict[str, dict]:
  return {n: {"choice": choices[n], "params": params.get(n, {})} for n in names}


def correlations(graphdef, state, x: np.ndarray, names) -> dict[str, float]:
  """r of each slot on the batch ``x`` (``pearson``), for a one-member stack ``state``, the
  network in eval mode (batch norm's running averages, no dropout)."""
  @jax.jit
  def measure(params, arch, rest):
    model = network.merge(graphdef, params, arch, rest, train=False)
    with capturing() as store:
      model(jnp.asarray(x), train=False)
    by_id = {id(slot): name for name, slot in models.slots(model)}
    return {by_id[k]: pearson(*io) for k, io in store.items()}
  one = jax.tree.map(lambda v: v[0], state)
  out = jax.device_get(measure(one.params, one.arch, one.rest))
  return {n: float(out[n]) for n in names}


def run(r: Run) -> Found:
  cfg, splits = r.cfg, r.splits
  c = cfg.search.correlation
  start = time.perf_counter()
  rngs = lambda: network.rngs(cfg.seed)  # noqa: E731
  probe = models.build(cfg.model, splits.input_shape, splits.num_outputs,
                       models.uniform_slots(c.activation), rngs())
  names = [n for n, _ in models.slots(probe)]
  choices = {n: c.activation for n in names}
  params: dict[str, dict] = {}
  if c.form == "parameter":
    pname, w0 = moved_parameter(c.activation)
    params = {n: {c.activation: {pname: w0}} for n in names}
  recipe = cfg.retrain.copy_and_resolve_references()
  recipe.epochs = c.round_epochs
  if c.form == "parameter":
    recipe.act_lr_scale = 0.0  # the rule sets the parameter; the optimizer does not
  x_probe = np.asarray(splits.inputs.normalise(splits.x_val[:c.val_batch]))
  r.logger.resume_at(0)  # a resumed run passes its finished rounds again and logs them again
  carried = None  # the weights outside the slots, carried from round to round
  rounds, examples = [], 0
  for k in range(c.rounds + 1):
    model = models.build(cfg.model, splits.input_shape, splits.num_outputs,
                         models.fixed_slots(_layers(names, choices, params)), rngs())
    if carried is not None:
      _carry(model, carried)
    graphdef, state = trainer.stack_models([model])
    objective = Objective.of(graphdef, splits)
    state, _ = trainer.fit(recipe, objective, state, splits.x_train, splits.y_train,
                           os.path.join(r.workdir, "correlation"), [cfg.seed + k],
                           [f"round{k}"], progress=r.progress, desc=f"round {k}",
                           resident_mb=cfg.data.resident_mb)
    examples += c.round_epochs * (len(splits.x_train) // recipe.batch_size) * recipe.batch_size
    carried = nnx.merge(graphdef, *jax.tree.map(lambda v: v[0],
                                                (state.params, state.arch, state.rest)))
    rs = correlations(graphdef, state, x_probe, names)
    scored = trainer.score(objective, state, splits.x_val, splits.y_val,
                           cfg.search.eval_batch_size, "val")
    val = float((scored["val/accuracy"] if splits.task == data.CLASSIFICATION
                 else -scored["val/loss"])[0])
    row = {"round": k, "choices": dict(choices), "r": rs, "val_score": val}
    if c.form == "parameter":
      row["w"] = {n: params[n][c.activation][pname] for n in names}
    rounds.append(row)
    best = max(x["val_score"] for x in rounds)
    r.logger.scalars(examples, {"correlation/val_score": val, "correlation/best_score": best,
                                **{f"correlation/r/{n}": rs[n] for n in names},
                                **{f"correlation/w/{n}": w for n, w in row.get("w", {}).items()}})
    if k == c.rounds:
      break
    if c.form == "parameter":
      new = {n: adjusted(w0, c.gain, rs[n]) for n in names}
      settled = all(abs(new[n] - params[n][c.activation][pname]) < c.tolerance for n in names)
      params = {n: {c.activation: {pname: new[n]}} for n in names}
    else:
      new_choices = {n: switched(rs[n], c.above, c.below) for n in names}
      settled = new_choices == choices
      choices = new_choices
    if settled:
      break
  last = rounds[-1]
  space = [c.activation] if c.form == "parameter" else list(
      dict.fromkeys([c.activation, *SWITCH_TARGETS]))
  layers = [{"name": n, "choice": choices[n], "formula": activations.get(choices[n]).formula,
             "candidates": space, "scores": {choices[n]: last["r"][n]},
             "params": activations.params_to_record(
                 {choices[n]: {p: np.asarray(v, np.float32)
                               for p, v in params.get(n, {}).get(choices[n], {}).items()}}
                 if params.get(n) else {})}
            for n in names]
  if c.form == "parameter":
    r.cfg.retrain.init_params, r.cfg.retrain.act_lr_scale = "searched", 0.0
  score_key = "val_accuracy" if splits.task == data.CLASSIFICATION else "val_minus_loss"
  info = {"method": f"correlation ({c.form})", "score": "Pearson r of each slot's input "
          f"and output on {len(x_probe)} val examples", "seconds": time.perf_counter() - start,
          "rounds": rounds, "settled": len(rounds) <= c.rounds}
  return Found(layers=layers, metrics={score_key: last["val_score"]}, step=len(rounds),
               fields={"relaxation": None, "granularity": "layer",
                       "discretize": "correlation", "selection": info},
               cost={"examples": examples, "trainings": len(rounds)})


def _carry(model: nnx.Module, previous: nnx.Module) -> None:
  """Copies every variable outside the slots (weights, normalisation statistics; not the
  random streams, which each round draws from its own) from ``previous`` into ``model``, a
  model of the same backbone whose slots may differ."""
  slots = [tuple(p) for p, node in nnx.iter_graph(model) if isinstance(node, Slot)]
  old = dict(nnx.to_flat_state(nnx.state(previous, nnx.Not(nnx.RngState))))
  flat = [(p, old[p] if p in old and not any(p[:len(s)] == s for s in slots) else v)
          for p, v in nnx.to_flat_state(nnx.state(model))]
  nnx.update(model, nnx.from_flat_state(flat))


def spend(cfg, given: Spend) -> None:
  """``actsearch compare``'s rule: ``round_epochs`` such that the ``rounds + 1`` trainings
  pass about ``scale`` x the reference's examples (a rule that settles early spends less)."""
  c = cfg.search.correlation
  per_epoch = (given.train_examples // cfg.retrain.batch_size) * cfg.retrain.batch_size
  c.round_epochs = max(1, int(round(given.scale * given.examples
                                    / ((c.rounds + 1) * per_epoch))))


# form parameter (w = w0 + gain r of `activation`'s one parameter) or switch (sigmoid if
# r > above, tanh if r < below, else relu); rounds of round_epochs each, r on the first
# val_batch val examples
DEFAULTS = {"form": "parameter", "activation": "prelu", "gain": 1.0, "rounds": 5,
            "round_epochs": 2, "tolerance": 1e-3, "val_batch": 1000, "above": 0.5,
            "below": -0.5}

STRATEGY = Strategy(run=run, check=check, defaults=DEFAULTS, budget=spend,
                    doc="dynamic adjustment by correlation: a slot's parameter w0 + k r, or its "
                        "function switched by r")
