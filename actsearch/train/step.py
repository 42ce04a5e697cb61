"""The plain weight step of a fixed network: retrain, bench, and any strategy that trains
architectures without alpha.

``TrainStep(state, batch) -> (state, metrics)`` takes one optimizer step on the mean training
loss of ``Objective``; under ``pmap`` the gradient, metrics and batch statistics are averaged
over axis ``data`` (batch norm reduces its statistics over it in the forward pass). Under
``jax.vmap`` over a leading seed axis of the state and the batch, several seeds train
together, each exactly as it would alone: a member's dropout draws from the streams it was
built with (its seed), folded with the step and the device (``objective.training_pass``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from actsearch.models.network import split_model
from actsearch.train import health
from actsearch.train.objective import Batch, Objective, training_pass
from actsearch.train.parallel import pmean, pmean_floats


@struct.dataclass
class TrainState:
  """Everything a fixed network's training needs to continue exactly."""
  step: jax.Array   # int32 scalar, steps taken
  params: Any       # weights (nnx.Param state)
  arch: Any         # alpha: empty for a fixed network (kept so evaluators treat all alike)
  rest: Any         # other variables (constants of fixed slots, batch statistics)
  opt: Any          # optimizer state
  active: Any = None  # bool scalar: whether the network still trains (a race); None: always


def init_state(model: nnx.Module, tx: optax.GradientTransformation | None
               ) -> tuple[Any, TrainState]:
  """``graphdef, state`` of a network at step 0 (``opt`` is None without ``tx``: the trainer
  fills it in)."""
  graphdef, params, arch, rest = split_model(model)
  return graphdef, TrainState(step=jnp.zeros((), jnp.int32), params=params, arch=arch,
                              rest=rest, opt=None if tx is None else tx.init(params))


@dataclasses.dataclass(frozen=True, eq=False)
class TrainStep:
  objective: Objective
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  axis_name: str | None = None

  def __call__(self, state: TrainState, batch: Batch):
    g, (metrics, rest) = jax.grad(self.objective, has_aux=True)(
        state.params, state.arch, state.rest, batch,
        training_pass(state.step, self.axis_name))
    g, metrics = pmean((g, metrics), self.axis_name)
    upd, opt = self.tx.update(g, state.opt, state.params)
    new = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, upd),
                        rest=pmean_floats(rest, self.axis_name), opt=opt)
    return new, {**{f"train/{k}": v for k, v in metrics.items()},
                 "train/lr": self.schedule(state.step)}


def while_active(step_fn):
  """``step_fn`` (a ``health.guard``-ed step with policy ``skip``) for a state with ``active``:
  a network whose step is not finite drops that update and stops (``active`` False), its
  metrics zero from then on, so one diverged network does not stop the others. An inactive
  network's step is computed and thrown away (``jnp.where``), not skipped by ``lax.cond``:
  XLA's CPU backend runs convolutions inside a conditional's branch 30 times slower
  (``trainer.one_by_one``), and a network stops only where it diverged."""
  def fn(state, *args):
    if state.active is None:
      return step_fn(state, *args)
    new, m = step_fn(state, *args)
    ok = jnp.logical_and(state.active, m[health.SKIPPED] == 0)
    kept = jax.tree.map(lambda n, o: jnp.where(state.active, n, o), new, state)
    return kept.replace(active=ok), {k: jnp.where(ok, v, jnp.zeros_like(v))
                                     for k, v in m.items()}
  return fn
