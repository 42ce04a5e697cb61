"""The trainer: train a stack of networks together with one recipe, and score them.

Every command that trains discrete networks calls it: retrain (the seeds of a variant), the
shortlist of discretization (shortlisted architectures times seeds), the bench, and every
strategy that scores architectures by training them. The members are ``TrainState``s stacked
on a leading axis (``stack``, ``stack_models``): they share one compiled step (``jax.vmap``
over the members inside the shared ``pmap`` loop), and each trains exactly as it would alone,
with the batch order of its own seed.

A training lives in a run directory keyed by what it trains (``fingerprint``: the members'
names, seeds and initial state, the data, and the recipe's keys that change what is computed),
``WORKDIR/KEY``. A second call in the same workdir with other members trains in a directory of
its own and never restores the first call's finished state; the same call again resumes (or,
finished, returns at once). A caller may name the directory itself (``key=``, retrain's
``found`` and baselines); then ``members.json`` in it records the fingerprint, and a directory
that holds another training is refused with one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from actsearch import data, models
from actsearch.errors import UserError
from actsearch.models import network
from actsearch.models.network import split_model
from actsearch.train import evaluate, files, health, loop, optim, parallel, step
from actsearch.train.events import SeedLoggers
from actsearch.train.feed import Feed
from actsearch.train.objective import Objective

# Recipe keys that say how a training goes, not what it computes: a run may resume with other
# values of them (``configs.RUN_ONLY`` names them for ``retrain.*``). The evaluation's batch
# does not change the training either: neither is part of a training's fingerprint.
RUN_ONLY = ("checkpoint_every", "async_checkpoints")
# ``init_params`` says where activation parameters start: the digest of the initial state
# covers it.
_NOT_TRAINED = (*RUN_ONLY, "eval_batch_size", "init_params")
# Keys added to the recipe later, at the value that trained as before they existed: left out,
# so that a training begun before them keeps its fingerprint.
_AS_BEFORE = {"act_weight_decay": None, "act_lr_scale": 1.0, "norm_weight_decay": 0.0}
MEMBERS_FILE = "members.json"


def stack(trees):
  """Pytrees of equal structure stacked on a new leading axis (members trained together)."""
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def stack_models(models: Sequence[nnx.Module]):
  """``graphdef, state``: the networks as members of one stacked ``TrainState`` at step 0
  (their optimizer state is filled in by ``fit``). They must share one structure."""
  graphdef = split_model(models[0])[0]
  return graphdef, stack([step.init_state(m, None)[1] for m in models])


def _digest(*arrays) -> str:
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(np.asarray(a))
    h.update(f"{a.dtype}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def _first(objective: Objective, state) -> nnx.Module:
  """Member 0 of a stacked state as a module."""
  return nnx.merge(objective.graphdef, *jax.tree.map(lambda a: np.asarray(a)[0],
                                                     (state.params, state.arch, state.rest)))


def structure(objective: Objective, state) -> list[str]:
  """The networks' structure, member 0's: each module's path and type in the module tree, and
  each activation slot's candidates (fixed slots differ by these alone, not by any array)."""
  model = _first(objective, state)
  out = [f"{'/'.join(map(str, path))}:{type(node).__name__}"
         for path, node in nnx.iter_graph(model) if isinstance(node, nnx.Module)]
  return out + [f"{name}:{','.join(c.name for c in slot.candidates)}"
                for name, slot in models.slots(model)]


def fingerprint(recipe: ml_collections.ConfigDict, objective: Objective, state, x: np.ndarray,
                y: np.ndarray, seeds: Sequence[int], names: Sequence[str]) -> dict:
  """What a training trains: the recipe (without the keys that do not change the training),
  the members' names, seeds and ``structure``, a digest of their initial variables (weights,
  alpha pins, constants) and of the data."""
  r = {k: v for k, v in json.loads(recipe.to_json()).items() if k not in _NOT_TRAINED
       and not (k in _AS_BEFORE and v == _AS_BEFORE[k])}
  fp = {"recipe": r, "names": list(names), "seeds": [int(s) for s in seeds],
        "task": objective.task, "structure": structure(objective, state),
        "state": _digest(*jax.tree.leaves((state.params, state.arch, state.rest))),
        "data": _digest(x, y)}
  if objective.loss != "auto":  # absent for the task's own loss: earlier runs' keys hold
    fp["loss"] = objective.loss
  return fp


def _key(fp: dict) -> str:
  return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


def _claim(run_dir: str, fp: dict, primary: bool) -> None:
  """Records ``fp`` in ``run_dir``, or refuses a directory that holds another training. A
  directory written before the trainer recorded its members (retrain's variants) is taken
  as it is: the command's ``config.json`` guards it."""
  path = os.path.join(run_dir, MEMBERS_FILE)
  if os.path.exists(path):
    if files.read_json(path) != fp:
      raise UserError(f"{run_dir} holds the training of other networks; use a new workdir "
                      "or delete it")
  elif primary:
    files.write_json_atomic(path, fp)


def fit(recipe: ml_collections.ConfigDict, objective: Objective, state, x: np.ndarray,
        y: np.ndarray, workdir: str, seeds: Sequence[int], names: Sequence[str], *,
        key: str | None = None, progress: bool = True, desc: str = "train", test=None,
        timeline: list | None = None, resident_mb: float = 1024, members: str = "vmap"):
  """Trains the members of a stacked ``TrainState`` together on ``x, y`` with ``recipe``
  (``retrain.*``: optimizer, lr, schedule, epochs, batch size, non-finite policy, checkpoint
  cadence); member ``i`` sees the batch order of ``seeds[i]`` and logs to
  ``RUN_DIR/names[i]``, where ``RUN_DIR`` is ``workdir/key`` (default key: the
  ``fingerprint``). Resumes from ``RUN_DIR``. ``test = (x, y)``: scored and logged
  (``test/...``) after the last epoch, before the last checkpoint, so that a resumed run logs
  it once. ``resident_mb``: ``feed.Feed``'s limit. ``members``:
  ``vmap`` (batched together) or ``map`` (one after the other, ``one_by_one``).
  A state with ``active`` (a race) trains only its active members (``step.while_active``).
  Returns the state and the wall time."""
  r = recipe
  if r.batch_size % jax.device_count():
    raise UserError(f"retrain.batch_size {r.batch_size} is not divisible by the "
                    f"{jax.device_count()} devices")
  steps = len(x) // r.batch_size
  if steps < 1:
    raise UserError(f"retrain.batch_size {r.batch_size} exceeds the {len(x)} training examples")
  primary = jax.process_index() == 0
  fp = fingerprint(r, objective, state, x, y, seeds, names)
  run_dir = os.path.join(workdir, key or _key(fp))
  if primary:
    os.makedirs(run_dir, exist_ok=True)
  _claim(run_dir, fp, primary)
  schedule = optim.weight_schedule(r, r.epochs * steps)
  tx = optim.weight_optimizer(r, schedule, network.batch_norm_paths(_first(objective, state)))
  state = jax.vmap(lambda st: st.replace(opt=tx.init(st.params)))(state) \
      if state.opt is None else state
  feed = Feed([(x, y)], lambda epoch: [np.stack([
      data.epoch_order(len(x), r.batch_size, s, epoch) for s in seeds])], steps,
      resident_mb, members=True, what="training data")
  on_nonfinite = r.get("on_nonfinite", "stop")
  racing = state.active is not None  # an inactive or diverged member stops alone
  member = health.guard(step.TrainStep(objective, tx, schedule, axis_name=parallel.AXIS),
                        "skip" if racing else on_nonfinite)
  member = feed.wrap(step.while_active(member) if racing else member)
  if members == "map":
    fn = one_by_one(loop.packed(member), len(seeds), feed.resident)
  else:
    fn = loop.packed(over_members(member, feed.in_axes(), members))
    fn.step = parallel.pmapped(fn)
  scorer = None if test is None else evaluator(objective, *test, r.eval_batch_size, "test",
                                               members)
  task = loop.Task(step=fn.step, metric_keys=fn.keys, batches=feed.batches,
                   steps_per_epoch=steps, stop_epoch=r.epochs, epochs=r.epochs,
                   evaluate=scorer, eval_every=r.epochs,
                   checkpoint_every=r.get("checkpoint_every", 0),
                   async_checkpoints=r.get("async_checkpoints"),
                   on_nonfinite=on_nonfinite, max_skipped=r.get("max_skipped", 10),
                   hint="lower retrain.lr",
                   desc=f"{desc} {os.path.basename(run_dir)} epochs")
  loggers = SeedLoggers(run_dir, list(names), primary)
  start = time.perf_counter()
  try:
    state, _ = loop.run(task, state, run_dir, loggers, progress=progress, timeline=timeline)
  finally:
    loggers.close()
  return state, time.perf_counter() - start


def one_by_one(fn, count: int, resident: bool):
  """The step of ``count`` stacked members taken one after the other, each by its own call of
  one compiled program: ``fn(member_state, *member_args)`` on member ``j`` (a traced index:
  one program for all), its state sliced out of the stack and written back in place (the
  stack is donated). Not ``lax.map``: XLA's CPU backend runs a convolution's gradient inside
  a loop body 30 to 40 times slower than outside one (a 3x3 convolution of 16 channels on 60
  32x32 images: 0.38 s against 0.009 s for the kernel's gradient), so a loop over members
  inside the step made the race on a ResNet 18 times slower than training the networks
  alone. ``fn.step(state, *args)``: the pmapped step of all members, metrics ``[devices,
  members, K]``; ``fn.keys``: the metrics' names."""
  take = lambda v, j: jax.lax.dynamic_index_in_dim(v, j, keepdims=False)  # noqa: E731

  def at(state, j, *args):
    mine = jax.tree.map(lambda v: take(v, j), state)
    if resident:  # (arrays, orders): the member's orders
      arrays, orders = args
      args = (arrays, [take(o, j) for o in orders])
    else:  # one batch per pair, the members on the leading axis
      args = jax.tree.map(lambda v: take(v, j), args)
    new, metrics = fn(mine, *args)
    return jax.tree.map(lambda v, n: jax.lax.dynamic_update_index_in_dim(v, n, j, 0), state,
                        new), metrics

  program = parallel.pmapped(at)
  stack_rows = jax.pmap(lambda *rows: jnp.stack(rows, axis=0))
  index = []

  def all_members(state, *args):
    if not index:  # each member's index, one per local device, placed once
      index.extend(parallel.replicate(np.int32(j)) for j in range(count))
    rows = []
    for j in range(count):
      state, m = program(state, index[j], *args)
      rows.append(m)
    return state, stack_rows(*rows)
  fn.step = all_members
  return fn


def over_members(fn, in_axes: tuple, how: str = "vmap"):
  """``fn`` over the members (leading axis) of the arguments whose ``in_axes`` is 0, the
  others shared: ``vmap`` (batched: what one member computes, all compute, so a
  ``lax.switch`` or ``lax.cond`` on a member's own value computes every branch), or ``map``
  (``lax.map``: one member after the other, each computing only its own branch: networks
  that differ by their ``SwitchActivation`` choices)."""
  if how == "vmap":
    return jax.vmap(fn, in_axes=in_axes)
  if how != "map":
    raise ValueError(f"members is {how!r}; known: vmap, map")

  def mapped(*args):
    def one(batched):
      it = iter(batched)
      return fn(*[next(it) if ax == 0 else a for a, ax in zip(args, in_axes)])
    return jax.lax.map(one, tuple(a for a, ax in zip(args, in_axes) if ax == 0))
  return mapped


def evaluator(objective: Objective, x: np.ndarray, y: np.ndarray, batch_size: int,
              prefix: str, members: str = "vmap") -> evaluate.Evaluator:
  """Replicated stacked state -> loss (and accuracy) of each member on ``x, y``."""
  return evaluate.Evaluator(objective, x, y, batch_size, prefix=prefix,
                            seed_axis=True if members == "vmap" else members)


def score(objective: Objective, state, x: np.ndarray, y: np.ndarray, batch_size: int,
          prefix: str, members: str = "vmap") -> dict[str, np.ndarray]:
  """Loss (and accuracy) of each member of a stacked state on ``x, y``."""
  return evaluator(objective, x, y, batch_size, prefix, members)(parallel.replicate(state))
