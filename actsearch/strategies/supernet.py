"""The supernet that DARTS, random activation and the black-box strategies share: its slots mix
every candidate (``space.mixed``); ``setup`` builds it with its bilevel step (``bilevel``:
first order, exact second order, DARTS' finite difference), ``run`` trains it on the shared
loop and discretizes it (``discretize``: one choice per slot), ``measurements`` is what a
discretization or a black-box strategy may measure (networks pinned from it and trained).

Its stabilisers: a warm start (``search.warmup_epochs``: weights only), candidate
normalisation and output clamping (in the slots, ``space.mixed``), temperature annealing
(``bilevel.temperature_schedule``), progressive shrinking (``selection.shrink``), and the
stochastic relaxations.

``search.epochs`` fixes the length of the search (the lr schedule spans it); ``stop_epoch``
only says where this invocation stops, so a run stopped at epoch 1 and continued to epoch 2
takes exactly the steps of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from actsearch import data, models, plots
from actsearch.errors import UserError
from actsearch.models import network
from actsearch.space import mixed, relaxations
from actsearch.strategies import bilevel, discretize, selection
from actsearch.strategies.base import Found, Run, Spend
from actsearch.train import evaluate, health, loop, optim, parallel
from actsearch.train.feed import Feed
from actsearch.train.objective import Objective

AXIS = parallel.AXIS


@dataclasses.dataclass
class Setup:
  """What a run and an export both need: data, model graph, step function."""
  cfg: ml_collections.ConfigDict
  splits: data.Splits
  model: nnx.Module
  graphdef: Any
  state: bilevel.SearchState
  objective: Objective
  steps_per_epoch: int
  step_fn: bilevel.StepFn


def check(cfg: ml_collections.ConfigDict) -> None:
  """Rejects values of the supernet's keys that no search can run with, naming the key."""
  s = cfg.search
  relaxations.get(s.relaxation)
  if s.order not in bilevel.ORDERS:
    raise UserError(f"search.order is {s.order!r}; known: {', '.join(bilevel.ORDERS)}")
  if s.granularity not in mixed.GRANULARITIES:
    raise UserError(f"search.granularity is {s.granularity!r}; known: "
                    f"{', '.join(mixed.GRANULARITIES)}")
  if not isinstance(s.warmup_epochs, int) or not 0 <= s.warmup_epochs < s.epochs:
    raise UserError(f"search.warmup_epochs must be an integer in [0, search.epochs), "
                    f"got {s.warmup_epochs!r}")
  if s.temperature <= 0 or (s.temperature_final is not None and s.temperature_final <= 0):
    raise UserError(f"search.temperature and search.temperature_final must be positive, got "
                    f"{s.temperature} and {s.temperature_final}")
  if cfg.optim.weights.lr <= 0 or cfg.optim.weights.lr_min <= 0:
    raise UserError("optim.weights.lr and optim.weights.lr_min must be positive")
  discretize.get(s.discretize)
  if not 0.0 < s.shrink_until <= 1.0:
    raise UserError(f"search.shrink_until must lie in (0, 1], got {s.shrink_until}")
  for key in ("shortlist_k", "shortlist_max", "shortlist_epochs", "shortlist_seeds"):
    if not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < 1:
      raise UserError(f"search.{key} must be a positive integer, got {s[key]!r}")
  if s.get("shortlist_reduce", "mean") not in selection.REDUCE_TEXT:
    raise UserError(f"search.shortlist_reduce is {s.shortlist_reduce!r}; known: "
                    f"{', '.join(selection.REDUCE_TEXT)}")
  if not isinstance(s.get("learning_curve", False), bool):
    raise UserError(f"search.learning_curve must be true or false, got {s.learning_curve!r}")


def build_supernet(cfg: ml_collections.ConfigDict, splits: data.Splits,
                   plain: bool = False, seed: int | None = None,
                   only: dict[str, list[str]] | None = None) -> nnx.Module:
  """The supernet, initialised with ``seed`` (default: the config's); ``plain`` leaves out the
  stabilisers that change what a slot computes (normalisation, clamping), so that a pinned
  slot is exactly its one candidate; ``only`` restricts each slot it names to those
  candidates (the shortlist's networks compute only theirs). The weights outside the slots
  start the same whatever the slots hold: each draw of the shared stream is keyed by its
  count, not its shape."""
  s = cfg.search
  per_slot = {k: list(v) for k, v in (s.get("slot_candidates") or {}).items()}
  per_slot.update(only or {})
  rngs = network.rngs(cfg.seed if seed is None else seed)
  slot = models.search_slots(list(s.candidates), s.relaxation, s.granularity, rngs,
                             temperature=s.temperature, use_fused=s.fused,
                             normalize=s.normalize and not plain,
                             clamp=0.0 if plain else s.clamp, implementation=s.implementation,
                             param_granularity=s.get("param_granularity"),
                             slot_candidates=per_slot)
  return models.build(cfg.model, splits.input_shape, splits.num_outputs, slot, rngs)


def setup(cfg: ml_collections.ConfigDict, splits: data.Splits | None = None) -> Setup:
  """The supernet, its state at step 0 and the bilevel step; ``splits`` default to the
  config's data split with its seed."""
  splits = data.load(cfg.data, cfg.seed) if splits is None else splits
  global_batch = cfg.search.batch_size
  devices = jax.device_count()
  if global_batch % devices:
    raise UserError(f"search.batch_size {global_batch} is not divisible by the "
                    f"{devices} devices")
  steps = min(len(splits.x_train), len(splits.x_val)) // global_batch
  if steps < 1:
    raise UserError(f"search.batch_size {global_batch} exceeds the train or val split "
                    f"({len(splits.x_train)} / {len(splits.x_val)} examples)")
  model = build_supernet(cfg, splits)
  unknown = set(cfg.search.get("slot_candidates") or {}) - {n for n, _ in models.slots(model)}
  if unknown:
    raise UserError(f"search.slot_candidates names {sorted(unknown)[0]!r}, which is not a slot "
                    f"of model {cfg.model.name!r} (its slots: "
                    f"{', '.join(n for n, _ in models.slots(model))})")
  schedule = optim.weight_schedule(cfg.optim.weights, cfg.search.epochs * steps)
  tx_w = optim.weight_optimizer(cfg.optim.weights, schedule, network.batch_norm_paths(model))
  tx_a = optim.arch_optimizer(cfg.optim.arch)
  graphdef, state = bilevel.init_state(model, tx_w, tx_a, cfg.seed)
  objective = Objective.of(graphdef, splits)
  step_fn = bilevel.StepFn(objective, tx_w, tx_a, schedule, order=cfg.search.order,
                           xi=cfg.search.xi,
                           stochastic=cfg.search.relaxation in relaxations.STOCHASTIC,
                           axis_name=AXIS, warmup_steps=cfg.search.warmup_epochs * steps,
                           temperature=bilevel.temperature_schedule(
                               cfg.search.temperature, cfg.search.temperature_final,
                               cfg.search.epochs * steps))
  return Setup(cfg, splits, model, graphdef, state, objective, steps, step_fn)


def _supernet(su: Setup, state) -> nnx.Module:
  return nnx.merge(su.graphdef, state.params, state.arch, state.rest)


def slot_views_of(su: Setup) -> list[discretize.SlotView]:
  """The supernet's slots at step 0 (names and candidates)."""
  return discretize.slot_views(_supernet(su, su.state))


def measurements(su: Setup, state, workdir: str, progress: bool = False) -> discretize.Context:
  """What discretization (and a black-box strategy) may measure: networks trained from
  scratch and scored on val (``selection.context``), the supernet's removal losses."""
  return selection.context(su, state, workdir,
                           lambda seed, only=None: build_supernet(su.cfg, su.splits, plain=True,
                                                                  seed=seed, only=only),
                           progress=progress)


# batch passes per bilevel step: first order, the weight step on a train batch and the alpha
# step on a val batch; DARTS' finite difference (eq. 8), the virtual step, the val gradient at
# it, two train gradients at w +- eps and the weight step; exact, the virtual step, the val
# gradient, its Hessian-vector product and the weight step
PASSES = {"first": 2, "second_fd": 5, "second": 4}


def supernet_examples(cfg: ml_collections.ConfigDict, model: nnx.Module, steps: int) -> int:
  """Examples the supernet passed in ``steps`` bilevel steps, each pass counted once per
  candidate its slots mix (the mean over slots), so that a one-shot search is not flattered."""
  mixed_k = np.mean([len(slot.candidates) for _, slot in models.slots(model)])
  return int(steps * cfg.search.batch_size * PASSES[cfg.search.order] * mixed_k)


def default_examples(su: Setup) -> int:
  """What the search of ``su.cfg`` spends, estimated before it runs: its supernet steps and,
  for ``screen``, every candidate screened plus a full shortlist; for ``shortlist``, the
  shortlist (each network at ``selection.network_examples``)."""
  cfg = su.cfg
  views = discretize.slot_views(su.model)
  per = selection.network_examples(cfg, len(su.splits.x_train))
  spanned = min(cfg.search.shortlist_max,
                int(np.prod([min(cfg.search.shortlist_k, len(v.candidates)) for v in views])))
  nets = {"screen": len({c for v in views for c in v.candidates}) + spanned,
          "shortlist": spanned}.get(cfg.search.discretize, 0)
  return supernet_examples(cfg, su.model, cfg.search.epochs * su.steps_per_epoch) + nets * per


def discretized(su: Setup, state, metrics: dict[str, float], workdir: str,
                step: int = 0, progress: bool = False) -> Found:
  """One choice per slot of a state, by the method of ``search.discretize``; its cost: the
  supernet's examples (``supernet_examples``) and the selection's trainings."""
  s = su.cfg.search
  ctx = measurements(su, state, workdir, progress)
  layers, info = discretize.get(s.discretize)(discretize.slot_views(_supernet(su, state)), ctx)
  supernet = supernet_examples(su.cfg, su.model, step)
  cost = {"examples": supernet + ctx.spent["examples"], "supernet_examples": supernet,
          "selection_examples": ctx.spent["examples"], "trainings": ctx.spent["trainings"]}
  return Found(layers=layers, metrics=metrics, step=step, cost=cost,
               fields={"relaxation": s.relaxation, "granularity": s.granularity,
                       "discretize": s.discretize, "selection": info})


def arch_scalars(su: Setup):
  """``fn(state) -> {arch/<slot>/<candidate>: relaxed weight (mean over channels),
  arch/<slot>/entropy: ..., params/<slot>/<candidate>/<param>: learned value (the mean over
  its entries and channels where it has several)}``: one jitted computation of every slot's
  weights, entropy and parameters (the supernet merged inside it) and one copy to the host.
  Logged after every epoch, where merging the supernet on the host and running its small ops
  one by one took 3.4 ms."""
  names = [(name, [c.name for c in slot.candidates]) for name, slot in models.slots(su.model)]

  @jax.jit
  def weights(params, arch, rest):
    out = []
    for _, slot in models.slots(nnx.merge(su.graphdef, params, arch, rest)):
      w = slot.weights(None)
      learned = {c: {p: jnp.mean(v) for p, v in ps.items()}
                 for c, ps in slot.candidate_params().items()}
      out.append((w.reshape(-1, w.shape[-1]).mean(0), relaxations.entropy(w), learned))
    return out

  def scalars(state) -> dict[str, float]:
    out = {}
    for (name, cands), (mean, ent, learned) in zip(names, jax.device_get(
        weights(state.params, state.arch, state.rest))):
      out.update({f"arch/{name}/{c}": float(v) for c, v in zip(cands, mean)})
      out[f"arch/{name}/entropy"] = float(ent)
      out.update({f"params/{name}/{c}/{p}": float(v) for c, ps in learned.items()
                  for p, v in ps.items()})
    return out
  return scalars


def _shrinker(su: Setup):
  """Progressive shrinking after each epoch (``selection.shrink``)."""
  s = su.cfg.search

  def after_epoch(epoch: int, state):
    keep = selection.alive_after(epoch, len(s.candidates), s.epochs, s.shrink_until)
    return selection.shrink(su.graphdef, state, keep)
  return after_epoch


def task(su: Setup, stop_epoch: int) -> loop.Task:
  """The search as the shared loop runs it: the bilevel step on a train and a val batch,
  the supernet evaluated on the val split, alpha's weights logged after each epoch."""
  cfg, splits, batch = su.cfg, su.splits, su.cfg.search.batch_size
  feed = Feed([(splits.x_train, splits.y_train), (splits.x_val, splits.y_val)],
              lambda epoch: [
                  data.epoch_order(len(splits.x_train), batch, cfg.seed, 2 * epoch),
                  data.epoch_order(len(splits.x_val), batch, cfg.seed, 2 * epoch + 1)],
              su.steps_per_epoch, cfg.data.resident_mb, what="train and val splits")
  step = loop.packed(feed.wrap(health.guard(su.step_fn, cfg.search.on_nonfinite)))
  return loop.Task(
      step=parallel.pmapped(step), metric_keys=step.keys,
      batches=feed.batches, steps_per_epoch=su.steps_per_epoch,
      on_nonfinite=cfg.search.on_nonfinite, max_skipped=cfg.search.max_skipped,
      stop_epoch=stop_epoch, epochs=cfg.search.epochs,
      evaluate=evaluate.Evaluator(su.objective, splits.x_val, splits.y_val,
                                  cfg.search.eval_batch_size, prefix="val"),
      eval_every=cfg.search.eval_every, checkpoint_every=cfg.search.checkpoint_every,
      async_checkpoints=cfg.search.async_checkpoints,
      epoch_scalars=arch_scalars(su),
      check=lambda state_r: (parallel.assert_replicated(state_r.arch, "alpha"),
                             parallel.assert_replicated(state_r.rest, "the running state")),
      after_epoch=_shrinker(su) if cfg.search.shrink else None,
      hint="lower optim.weights.lr or optim.arch.lr", desc="search epochs")


def run(r: Run) -> Found:
  """Searches (resuming from the workdir's newest checkpoint), then discretizes."""
  su = r.setup
  slot_names = [n for n, _ in models.slots(su.model)]
  r.logger.at_open(  # one chart per slot with all its candidates' weights
      lambda writer: plots.add_layout(writer, slot_names, list(su.cfg.search.candidates)))
  state, record = loop.run(task(su, r.stop_epoch), su.state, r.workdir, r.logger,
                           progress=r.progress, timeline=r.timeline)
  return discretized(su, state, record.get("metrics", {}), r.workdir, int(state.step),
                     r.progress)


def export(su: Setup, run_dir: str) -> Found:
  """Discretizes the newest checkpoint of the search in ``run_dir``."""
  from actsearch.train.checkpoint import Checkpointer

  ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"), read_only=True)
  try:
    if ckpt.latest() is None:
      raise UserError(f"{run_dir} holds no checkpoint yet")
    state, record = ckpt.restore(su.state)
  finally:
    ckpt.close()
  return discretized(su, state, record.get("metrics", {}), run_dir, int(state.step))



def wider_shortlist(cfg: ml_collections.ConfigDict, scale: int,
                    examples: float) -> tuple[int, int]:
  """``(shortlist_k, shortlist_max)`` of a one-shot search given ``scale`` x ``examples``: its
  ``search.epochs`` already scaled, the most candidates per slot whose estimated spend
  (``default_examples``: the supernet, the screen, the whole shortlist) stays within
  ``scale * examples``; at least the config's own ``shortlist_k``."""
  su = setup(cfg.copy_and_resolve_references())
  views = discretize.slot_views(su.model)
  s = su.cfg.search
  widest = max(len(v.candidates) for v in views)
  best = (s.shortlist_k, s.shortlist_max)
  for k in range(s.shortlist_k + 1, widest + 1):
    s.shortlist_k = k
    s.shortlist_max = max(best[1], int(np.prod([min(k, len(v.candidates)) for v in views])))
    if default_examples(su) > scale * examples:
      break
    best = (s.shortlist_k, s.shortlist_max)
  return best


def budget(cfg: ml_collections.ConfigDict, spend: Spend) -> None:
  """A one-shot search at ``spend.scale`` times the reference: ``scale`` times the supernet's
  epochs and, above 1x, the widest shortlist that the spend allows (``wider_shortlist``)."""
  if spend.scale > 1:
    cfg.search.epochs = cfg.search.epochs * spend.scale
    cfg.search.shortlist_k, cfg.search.shortlist_max = wider_shortlist(cfg, spend.scale,
                                                                       spend.examples)
