"""Non-finite values: detected on the device inside the step, handled by a policy.

``guard(step, policy)`` wraps a step function ``(state, *batches) -> (state, metrics)``. The
wrapped step adds ``health/skipped`` (1.0 where the step was not finite, else 0.0) to its
metrics; a step is finite when every loss in its metrics and every floating-point leaf of the
new weights, alpha and other state (batch norm's running averages) is finite. Policies
(``search.on_nonfinite``, ``retrain.on_nonfinite``):

* ``stop`` (default): the state is updated as computed; the loop, which reads the metrics once
  per epoch (no host round trip per step), stops with one line naming the step and the last
  good checkpoint, which it keeps.
* ``skip``: a non-finite update is dropped on the device (the state stays as it was, only the
  step counter moves on, so the data order continues); the loop counts skipped steps
  (TensorBoard ``health/skipped_steps``) and stops after ``max_skipped`` in a row.

Under ``pmap`` the decision is the same on every device (losses and updates are averaged
before it); under ``vmap`` over seeds each seed decides for itself.

Test hook: ``ACTSEARCH_POISON_STEP=N`` (read when the step is traced) makes the update of step
N (0-based) non-finite, so tests exercise the policies at a step they choose.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp

POLICIES = ("stop", "skip")
POISON_ENV = "ACTSEARCH_POISON_STEP"
SKIPPED = "health/skipped"


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def guard(step_fn: Callable, policy: str = "stop") -> Callable:
  """``step_fn`` with non-finite detection and the ``policy`` applied (see the module)."""
  poison = os.environ.get(POISON_ENV)

  def guarded(state, *batches):
    new, metrics = step_fn(state, *batches)
    if poison:
      bad = state.step == int(poison)
      nan = jnp.where(bad, jnp.nan, 1.0)
      new = new.replace(params=jax.tree.map(lambda p: p * nan.astype(p.dtype), new.params))
      metrics = {k: (v * nan if k.endswith("/loss") else v) for k, v in metrics.items()}
    losses = {k: v for k, v in metrics.items() if k.endswith("/loss")}
    ok = (_all_finite(losses) & _all_finite(new.params) & _all_finite(getattr(new, "arch", ()))
          & _all_finite(getattr(new, "rest", ())))
    if policy == "skip":
      kept = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
      new = kept.replace(step=new.step)
    return new, {**metrics, SKIPPED: jnp.where(ok, 0.0, 1.0)}
  return guarded
