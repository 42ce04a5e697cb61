"""The run loop: config -> data -> supernet -> bilevel steps -> logs, checkpoints, export.

``run`` resumes from the newest checkpoint in ``workdir/checkpoints`` when there is one.
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
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from actsearch import architecture, bilevel, configs, data, models, relaxations
from actsearch.checkpoint import Checkpointer
from actsearch.errors import UserError
from actsearch.logging import RunLogger

AXIS = "data"


@dataclasses.dataclass
class Setup:
  """What a run and an export both need: data, model graph, step functions."""
  cfg: ml_collections.ConfigDict
  splits: data.Splits
  model: nnx.Module
  graphdef: Any
  state: bilevel.SearchState
  objective: bilevel.Objective
  steps_per_epoch: int
  step_fn: bilevel.StepFn


def build_supernet(cfg: ml_collections.ConfigDict, splits: data.Splits) -> nnx.Module:
  s = cfg.search
  rngs = nnx.Rngs(params=cfg.seed)
  slot = models.search_slots(list(s.candidates), s.relaxation, s.granularity, rngs,
                             temperature=s.temperature, use_fused=s.fused)
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
  schedule = bilevel.weight_schedule(cfg.optim.weights, cfg.search.epochs * steps)
  tx_w = bilevel.weight_optimizer(cfg.optim.weights, schedule)
  tx_a = bilevel.arch_optimizer(cfg.optim.arch)
  graphdef, state = bilevel.init_state(model, tx_w, tx_a, cfg.seed)
  objective = bilevel.Objective(graphdef, splits.task)
  step_fn = bilevel.StepFn(objective, tx_w, tx_a, schedule, order=cfg.search.order,
                           xi=cfg.search.xi,
                           stochastic=cfg.search.relaxation in relaxations.STOCHASTIC,
                           axis_name=AXIS, warmup_steps=cfg.search.warmup_epochs * steps)
  return Setup(cfg, splits, model, graphdef, state, objective, steps, step_fn)


# --- device placement -----------------------------------------------------------------

def replicate(tree):
  """One copy of ``tree`` per local device, placed as ``pmap`` outputs are (so that the
  first step does not compile for other input shardings than the rest)."""
  n = jax.local_device_count()
  stacked = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n, *np.shape(x))), tree)
  return _identity(stacked)


_identity = jax.pmap(lambda tree: tree)


def unreplicate(tree):
  """The first local replica of a pmapped pytree, as numpy."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)).reshape(x.shape[1:]), tree)


def assert_replicated(tree, what: str) -> None:
  """Raises if the local replicas of a pmapped pytree differ (they must stay identical)."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    first = np.asarray(leaf.addressable_data(0))
    for i in range(1, len(leaf.addressable_shards)):
      if not np.array_equal(np.asarray(leaf.addressable_data(i)), first):
        raise RuntimeError(f"{what}{jax.tree_util.keystr(path)} differs between device 0 and "
                           f"device {i}: the replicas have diverged")


def local_shard(x: np.ndarray) -> np.ndarray:
  """This process's slice of a global batch, split over its local devices."""
  per_process = x.shape[0] // jax.process_count()
  start = jax.process_index() * per_process
  return data.shard(x[start:start + per_process], jax.local_device_count())


def _batch(x, y, idx):
  return {"x": local_shard(x[idx]), "y": local_shard(y[idx])}


def evaluate(su: Setup, state_r, x: np.ndarray, y: np.ndarray, eval_fn) -> dict[str, float]:
  """Loss (and accuracy) of the supernet on a whole split, deterministic weights."""
  b = su.cfg.search.eval_batch_size
  b += (-b) % jax.device_count()
  n = len(x)
  totals: dict[str, float] = {}
  for start in range(0, n, b):
    idx = np.arange(start, start + b)
    mask = (idx < n).astype(np.float32)
    idx = np.minimum(idx, n - 1)
    sums = eval_fn(state_r, _batch(x, y, idx), local_shard(mask))
    for k, v in unreplicate(sums).items():
      totals[k] = totals.get(k, 0.0) + float(v)
  out = {"loss": totals["loss"] / totals["count"]}
  if "correct" in totals:
    out["accuracy"] = totals["correct"] / totals["count"]
  return out


def _eval_fn(su: Setup):
  def fn(state, batch, mask):
    return bilevel.eval_sums(su.objective, state.params, state.arch, state.rest, batch, mask,
                             axis_name=AXIS)
  return jax.pmap(fn, axis_name=AXIS)


# --- export ----------------------------------------------------------------------------

def discretize(su: Setup, state, metrics: dict[str, float]) -> dict:
  """The architecture record of a state."""
  model = nnx.merge(su.graphdef, state.params, state.arch, state.rest)
  layers = []
  for name, slot in models.slots(model):
    weights = np.asarray(slot.weights(None))
    params = jax.tree.map(np.asarray, slot.candidate_params())
    layers.append(architecture.discretize_slot(
        name, weights, [c.name for c in slot.candidates], params))
  s = su.cfg.search
  return architecture.make(
      layers, candidates=list(s.candidates), relaxation=s.relaxation, granularity=s.granularity,
      model=configs.to_json(su.cfg.model), data={**configs.to_json(su.cfg.data),
                                                  **su.splits.describe()},
      metrics=metrics, seed=su.cfg.seed)


def arch_scalars(su: Setup, state) -> dict[str, float]:
  model = nnx.merge(su.graphdef, state.params, state.arch, state.rest)
  out = {}
  for name, slot in models.slots(model):
    w = np.asarray(slot.weights(None))
    mean = w.reshape(-1, w.shape[-1]).mean(0)
    for cand, value in zip(slot.candidates, mean):
      out[f"arch/{name}/{cand.name}"] = float(value)
    out[f"arch/{name}/entropy"] = float(relaxations.entropy(jnp.asarray(w)))
  return out


# --- the run ---------------------------------------------------------------------------

def _prepare_workdir(workdir: str, cfg: ml_collections.ConfigDict, primary: bool) -> None:
  path = os.path.join(workdir, "config.json")
  resolved = configs.to_json(cfg)
  if os.path.exists(path):
    try:
      with open(path, encoding="utf-8") as f:
        stored = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise UserError(f"{path} is unreadable ({e}); use a new --workdir") from None
    if stored != resolved:
      diff = sorted(configs.diff_keys(stored, resolved))
      raise UserError(f"{workdir} holds a run with a different config ({', '.join(diff)}); "
                      "use a new --workdir or the same settings to resume")
  elif primary:
    architecture.write_json_atomic(path, resolved)


def run(cfg: ml_collections.ConfigDict, workdir: str, *, stop_epoch: int | None = None,
        data_path: str | None = None, progress: bool = True) -> dict:
  """Searches, resuming from ``workdir`` if it holds a checkpoint; returns the architecture."""
  if data_path:
    cfg.data.name, cfg.data.path = "npz", os.path.abspath(data_path)
  su = setup(cfg, None)
  stop = cfg.search.epochs if stop_epoch is None else stop_epoch
  if stop < 1:
    raise UserError(f"--epochs must be a positive integer, got {stop}")
  primary = jax.process_index() == 0
  if primary:
    os.makedirs(workdir, exist_ok=True)
  _prepare_workdir(workdir, cfg, primary)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  # Only process 0 writes; the others read the newest checkpoint to resume from it.
  ckpt = Checkpointer(ckpt_dir, read_only=not primary) if primary or os.path.isdir(ckpt_dir) \
      else None
  state, record = su.state, {"epoch": 0, "metrics": {}}
  if ckpt is not None and ckpt.latest_epoch() is not None:
    state, record = ckpt.restore(su.state)
  start = int(record["epoch"])
  logger = RunLogger(workdir, enabled=primary)
  step_fn = bilevel.parallel(su.step_fn, AXIS)
  eval_fn = _eval_fn(su)
  state_r = replicate(state)
  splits = su.splits
  metrics = dict(record.get("metrics", {}))
  bar = _progress(progress and primary, start, stop, su.steps_per_epoch)
  try:
    for epoch in range(start, stop):
      order_tr = data.epoch_order(len(splits.x_train), cfg.search.batch_size, cfg.seed, 2 * epoch)
      order_va = data.epoch_order(len(splits.x_val), cfg.search.batch_size, cfg.seed, 2 * epoch + 1)
      step_metrics = []
      for i in range(su.steps_per_epoch):
        state_r, m = step_fn(state_r, _batch(splits.x_train, splits.y_train, order_tr[i]),
                             _batch(splits.x_val, splits.y_val, order_va[i]))
        step_metrics.append(m)
        if bar is not None:
          bar.update(1)
      step_metrics = [unreplicate(m) for m in step_metrics]  # one sync per epoch
      first_step = epoch * su.steps_per_epoch
      for i, m in enumerate(step_metrics):
        if not np.isfinite(m["train/loss"]) or not np.isfinite(m["val_batch/loss"]):
          raise FloatingPointError(
              f"non-finite loss at step {first_step + i} (epoch {epoch + 1}); the last "
              f"checkpoint is epoch {epoch}: lower optim.weights.lr or optim.arch.lr")
        logger.scalars(first_step + i + 1, m)
      assert_replicated(state_r.arch, "alpha")
      val = evaluate(su, state_r, splits.x_val, splits.y_val, eval_fn)
      metrics = {f"val_{k}": v for k, v in val.items()}
      state = unreplicate(state_r)
      end_step = (epoch + 1) * su.steps_per_epoch
      logger.scalars(end_step, {**{f"val/{k}": v for k, v in val.items()},
                                **arch_scalars(su, state)})
      logger.flush()
      if primary:
        ckpt.save(epoch + 1, state, {"epoch": epoch + 1, "metrics": metrics})
      if bar is not None:
        last = step_metrics[-1]
        bar.set_postfix({"epoch": epoch + 1, "loss": f"{last['train/loss']:.3f}",
                         **({"acc": f"{last['train/accuracy']:.3f}"}
                            if "train/accuracy" in last else {}),
                         **{k: f"{v:.3f}" for k, v in metrics.items()}})
    assert_replicated(state_r, "state")
  finally:
    if bar is not None:
      bar.close()
    logger.close()
    if ckpt is not None:
      ckpt.close()
  arch = discretize(su, state, metrics)
  if primary:
    architecture.save(os.path.join(workdir, "architecture.json"), arch)
  return arch


def _progress(enabled: bool, start: int, stop: int, steps: int):
  if not enabled or start >= stop:
    return None
  from tqdm.auto import tqdm
  return tqdm(total=(stop - start) * steps, desc=f"search epochs {start + 1}-{stop}",
              unit="step", dynamic_ncols=True)


def export(run_dir: str, out: str | None = None) -> dict:
  """Discretizes the newest checkpoint of a run and writes the architecture."""
  cfg_path = os.path.join(run_dir, "config.json")
  if not os.path.isfile(cfg_path):
    raise UserError(f"{run_dir} is not a search run (no config.json)")
  try:
    with open(cfg_path, encoding="utf-8") as f:
      cfg = ml_collections.ConfigDict(json.load(f))
  except json.JSONDecodeError as e:
    raise UserError(f"{cfg_path}: malformed JSON ({e.msg})") from None
  su = setup(cfg)
  ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"), read_only=True)
  try:
    if ckpt.latest_epoch() is None:
      raise UserError(f"{run_dir} holds no checkpoint yet")
    state, record = ckpt.restore(su.state)
  finally:
    ckpt.close()
  arch = discretize(su, state, record.get("metrics", {}))
  architecture.save(out or os.path.join(run_dir, "architecture.json"), arch)
  return arch
