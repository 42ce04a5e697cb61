"""``actsearch search`` and ``export``: config -> data -> supernet -> bilevel steps on the
shared loop -> discretize -> ``architecture.json``.

``search.epochs`` fixes the length of the search (the lr schedule spans it); ``stop_epoch``
only says where this invocation stops, so a run stopped at epoch 1 and continued to epoch 2
takes exactly the steps of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
from flax import nnx

from actsearch import (
  architecture,
  bilevel,
  configs,
  data,
  discretize,
  evaluate,
  health,
  loop,
  models,
  optim,
  parallel,
  plots,
  relaxations,
  selection,
)
from actsearch.errors import UserError
from actsearch.feed import Feed
from actsearch.lock import WorkdirLock
from actsearch.logging import RunLogger
from actsearch.objective import Objective

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


def build_supernet(cfg: ml_collections.ConfigDict, splits: data.Splits,
                   plain: bool = False, seed: int | None = None) -> nnx.Module:
  """The supernet, initialised with ``seed`` (default: the config's); ``plain`` leaves out the
  stabilisers that change what a slot computes (normalisation, clamping), so that a pinned
  slot is exactly its one candidate."""
  s = cfg.search
  rngs = nnx.Rngs(params=cfg.seed if seed is None else seed)
  slot = models.search_slots(list(s.candidates), s.relaxation, s.granularity, rngs,
                             temperature=s.temperature, use_fused=s.fused,
                             normalize=s.normalize and not plain,
                             clamp=0.0 if plain else s.clamp)
  return models.build(cfg.model, splits.input_shape, splits.num_outputs, slot, rngs)


def setup(cfg: ml_collections.ConfigDict, data_path: str | None = None) -> Setup:
  configs.check(cfg)
  splits = data.load(cfg.data, cfg.seed, data_path)
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
  schedule = optim.weight_schedule(cfg.optim.weights, cfg.search.epochs * steps)
  tx_w = optim.weight_optimizer(cfg.optim.weights, schedule)
  tx_a = optim.arch_optimizer(cfg.optim.arch)
  graphdef, state = bilevel.init_state(model, tx_w, tx_a, cfg.seed)
  objective = Objective(graphdef, splits.task)
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


def discretized(su: Setup, state, metrics: dict[str, float], workdir: str) -> dict:
  """The architecture record of a state, by the method of ``search.discretize``."""
  s = su.cfg.search
  ctx = selection.context(su, state, workdir,
                          lambda seed: build_supernet(su.cfg, su.splits, plain=True, seed=seed))
  layers, info = discretize.get(s.discretize)(discretize.slot_views(_supernet(su, state)), ctx)
  return architecture.make(
      layers, candidates=list(s.candidates), relaxation=s.relaxation, granularity=s.granularity,
      model=configs.to_json(su.cfg.model), data={**configs.to_json(su.cfg.data),
                                                  **su.splits.describe()},
      metrics=metrics, seed=su.cfg.seed, discretize=s.discretize, selection=info,
      retrain=configs.to_json(su.cfg.retrain))


def arch_scalars(su: Setup):
  """``fn(state) -> {arch/<slot>/<candidate>: relaxed weight (mean over channels),
  arch/<slot>/entropy: ...}``: one jitted computation of every slot's weights and entropy
  (the supernet merged inside it) and one copy to the host. Logged after every epoch, where
  merging the supernet on the host and running its small ops one by one took 3.4 ms."""
  names = [(name, [c.name for c in slot.candidates]) for name, slot in models.slots(su.model)]

  @jax.jit
  def weights(params, arch, rest):
    out = []
    for _, slot in models.slots(nnx.merge(su.graphdef, params, arch, rest)):
      w = slot.weights(None)
      out.append((w.reshape(-1, w.shape[-1]).mean(0), relaxations.entropy(w)))
    return out

  def scalars(state) -> dict[str, float]:
    out = {}
    for (name, cands), (mean, ent) in zip(names, jax.device_get(
        weights(state.params, state.arch, state.rest))):
      out.update({f"arch/{name}/{c}": float(v) for c, v in zip(cands, mean)})
      out[f"arch/{name}/entropy"] = float(ent)
    return out
  return scalars


def _shrinker(su: Setup):
  """Progressive shrinking after each epoch (``selection.shrink``)."""
  s = su.cfg.search

  def after_epoch(epoch: int, state):
    keep = selection.alive_after(epoch, len(s.candidates), s.epochs, s.shrink_until)
    return selection.shrink(su.graphdef, state, keep)
  return after_epoch


def run(cfg: ml_collections.ConfigDict, workdir: str, *, stop_epoch: int | None = None,
        data_path: str | None = None, progress: bool = True,
        timeline: list | None = None) -> dict:
  """Searches, resuming from ``workdir`` if it holds a checkpoint; returns the architecture."""
  if data_path:
    cfg.data.name, cfg.data.path = "npz", os.path.abspath(data_path)
  su = setup(cfg, None)
  stop = cfg.search.epochs if stop_epoch is None else stop_epoch
  if stop < 1:
    raise UserError(f"--epochs must be a positive integer, got {stop}")
  primary = jax.process_index() == 0
  with WorkdirLock(workdir, enabled=primary):  # one run per workdir
    return _search(su, workdir, stop, primary, progress, timeline)


def _search(su: Setup, workdir: str, stop: int, primary: bool, progress: bool,
            timeline: list | None) -> dict:
  cfg = su.cfg
  loop.prepare_workdir(workdir, cfg, primary)
  splits, batch = su.splits, cfg.search.batch_size

  feed = Feed([(splits.x_train, splits.y_train), (splits.x_val, splits.y_val)],
              lambda epoch: [
                  data.epoch_order(len(splits.x_train), batch, cfg.seed, 2 * epoch),
                  data.epoch_order(len(splits.x_val), batch, cfg.seed, 2 * epoch + 1)],
              su.steps_per_epoch, cfg.data.resident_mb, what="train and val splits")
  step = loop.packed(feed.wrap(health.guard(su.step_fn, cfg.search.on_nonfinite)))
  task = loop.Task(
      step=parallel.pmapped(step), metric_keys=step.keys,
      batches=feed.batches, steps_per_epoch=su.steps_per_epoch,
      on_nonfinite=cfg.search.on_nonfinite, max_skipped=cfg.search.max_skipped,
      stop_epoch=stop, epochs=cfg.search.epochs,
      evaluate=evaluate.Evaluator(su.objective, splits.x_val, splits.y_val,
                                  cfg.search.eval_batch_size, prefix="val"),
      eval_every=cfg.search.eval_every, checkpoint_every=cfg.search.checkpoint_every,
      async_checkpoints=cfg.search.async_checkpoints,
      epoch_scalars=arch_scalars(su),
      check=lambda state_r: parallel.assert_replicated(state_r.arch, "alpha"),
      after_epoch=_shrinker(su) if cfg.search.shrink else None,
      hint="lower optim.weights.lr or optim.arch.lr", desc="search epochs")
  logger = RunLogger(workdir, enabled=primary)
  try:
    slot_names = [n for n, _ in models.slots(su.model)]
    logger.at_open(  # one chart per slot with all its candidates' weights
        lambda writer: plots.add_layout(writer, slot_names, list(cfg.search.candidates)))
    state, record = loop.run(task, su.state, workdir, logger, progress=progress,
                             timeline=timeline)
    arch = discretized(su, state, record.get("metrics", {}), workdir)
    if primary:
      architecture.save(os.path.join(workdir, "architecture.json"), arch)
      plots.write(workdir, arch, writer=logger.writer, step=int(state.step))
  finally:
    logger.close()
  return arch


def export(run_dir: str, out: str | None = None) -> dict:
  """Discretizes the newest checkpoint of a run and writes the architecture."""
  from actsearch.checkpoint import Checkpointer

  cfg_path = os.path.join(run_dir, "config.json")
  if not os.path.isfile(cfg_path):
    raise UserError(f"{run_dir} is not a search run (no config.json)")
  try:
    with open(cfg_path, encoding="utf-8") as f:
      cfg = configs.from_json(json.load(f))
  except json.JSONDecodeError as e:
    raise UserError(f"{cfg_path}: malformed JSON ({e.msg})") from None
  su = setup(cfg)
  ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"), read_only=True)
  try:
    if ckpt.latest() is None:
      raise UserError(f"{run_dir} holds no checkpoint yet")
    state, record = ckpt.restore(su.state)
  finally:
    ckpt.close()
  arch = discretized(su, state, record.get("metrics", {}), run_dir)
  out = out or os.path.join(run_dir, "architecture.json")
  architecture.save(out, arch)
  plots.write(os.path.dirname(os.path.abspath(out)), arch)
  return arch


