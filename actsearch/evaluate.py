"""The evaluator: a model's mean loss (and accuracy) on a whole split, on every device.

Batches of ``batch_size`` (rounded up to a multiple of the device count) go through
``Objective.sums`` in evaluation mode; the last batch is padded and the padding masked out,
so every example counts once. With ``seed_axis`` the state holds several independently
trained networks on a leading axis (seeds trained together) and each gets its own result.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from actsearch import parallel
from actsearch.objective import Objective, finish


def evaluator(objective: Objective, x: np.ndarray, y: np.ndarray, batch_size: int, *,
              prefix: str, seed_axis: bool = False) -> Callable[[object], dict]:
  """``fn(replicated_state) -> {f"{prefix}/loss": ..., f"{prefix}/accuracy": ...}``; the
  state needs ``params``, ``arch`` and ``rest``."""
  def sums(state, batch, mask):
    return objective.sums(state.params, state.arch, state.rest, batch, mask)
  if seed_axis:
    sums = jax.vmap(sums, in_axes=(0, None, None))
  psummed = jax.pmap(lambda s, b, m: jax.lax.psum(sums(s, b, m), parallel.AXIS),
                     axis_name=parallel.AXIS)
  b = batch_size + (-batch_size) % jax.device_count()
  n = len(x)

  def run(state_r) -> dict:
    totals: dict[str, np.ndarray] = {}
    for start in range(0, n, b):
      idx = np.arange(start, start + b)
      mask = (idx < n).astype(np.float32)
      idx = np.minimum(idx, n - 1)
      out = parallel.unreplicate(psummed(state_r, parallel.batch(x, y, idx),
                                         parallel.local_shard(mask)))
      for k, v in out.items():
        totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
    return {f"{prefix}/{k}": (v if seed_axis else float(v)) for k, v in finish(totals).items()}
  return run
