"""The evaluator: a model's mean loss (and accuracy) on a whole split, on every device.

Batches of ``batch_size`` (rounded up to a multiple of the device count) go through
``Objective.sums`` in evaluation mode; the last batch is padded and the padding masked out,
so every example counts once. With ``seed_axis`` the state holds several independently
trained networks on a leading axis (seeds trained together) and each gets its own result;
``seed_axis="map"`` evaluates them one after the other (``trainer.over_members``), an
inactive one (a state's ``active``) not at all (its result: zero loss and accuracy).
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np

from actsearch.train import parallel
from actsearch.train.objective import Objective, finish


class Evaluator:
  """``Evaluator(...)(replicated_state) -> {f"{prefix}/loss": ..., f"{prefix}/accuracy":
  ...}`` over the whole split (the state needs ``params``, ``arch`` and ``rest``);
  ``compile(state)`` compiles it ahead: the loop does so before its first step, so that an
  evaluation that cannot compile fails then, and no compilation falls in the middle of a run
  (the default search's takes 0.35 s on this VM)."""

  def __init__(self, objective: Objective, x: np.ndarray, y: np.ndarray, batch_size: int, *,
               prefix: str, seed_axis: bool | str = False):
    def sums(state, batch, mask):
      return objective.sums(state.params, state.arch, state.rest, batch, mask)
    if seed_axis == "map":  # one member after the other; an inactive one computes nothing
      one = sums

      def sums(state, batch, mask):
        def member(st):
          if st.active is None:
            return one(st, batch, mask)
          shapes = jax.eval_shape(one, st, batch, mask)
          return jax.lax.cond(st.active, lambda s: one(s, batch, mask),
                              lambda s: {k: (jnp.sum(mask) if k == "count" else
                                             jnp.zeros(v.shape, v.dtype))
                                         for k, v in shapes.items()}, st)
        return jax.lax.map(member, state)
    elif seed_axis:
      sums = jax.vmap(sums, in_axes=(0, None, None))
    self._psummed = jax.pmap(lambda s, b, m: jax.lax.psum(sums(s, b, m), parallel.AXIS),
                             axis_name=parallel.AXIS)
    self._compiled = False
    self._x, self._y, self._prefix, self._seed_axis = x, y, prefix, bool(seed_axis)
    self._b = batch_size + (-batch_size) % jax.device_count()

  def over(self, x: np.ndarray, y: np.ndarray, prefix: str) -> Evaluator:
    """The same evaluation on another split, sharing this one's program (its batches have the
    same shape: nothing compiles again)."""
    other = copy.copy(self)
    other._x, other._y, other._prefix = x, y, prefix
    return other

  def _args(self, state_r, start: int) -> tuple:
    """The arguments of the batch at ``start``: the last one padded, the padding masked."""
    n = len(self._x)
    idx = np.arange(start, start + self._b)
    mask = (idx < n).astype(np.float32)
    return (state_r, parallel.batch(self._x, self._y, np.minimum(idx, n - 1)),
            parallel.local_shard(mask))

  def compile(self, state_r) -> None:
    """Compiles the evaluation by running its first batch (result dropped). Not through
    ``lower().compile()``: in a multi-process run that executable takes the global batch,
    where ``pmap`` called as usual takes each process's own."""
    if not self._compiled:
      jax.block_until_ready(self._psummed(*self._args(state_r, 0)))
      self._compiled = True

  def __call__(self, state_r) -> dict:
    totals: dict[str, np.ndarray] = {}
    for start in range(0, len(self._x), self._b):
      out = parallel.unreplicate(self._psummed(*self._args(state_r, start)))
      for k, v in out.items():
        totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
    return {f"{self._prefix}/{k}": (v if self._seed_axis else float(v))
            for k, v in finish(totals).items()}
