"""How a loop's batches reach the devices: data resident on the devices, or host batches.

* ``resident`` (while the arrays fit in ``data.resident_mb``): the arrays are copied to every
  local device once. Each epoch's order (``data.epoch_order``, a function of seed and epoch)
  is copied once per epoch as indices, and a step takes its batch on the device: row
  ``state.step mod steps_per_epoch`` of the order, gathered from the resident arrays. No host
  work and no copy per step.
* ``host``: the step's examples are gathered on the host and copied for every step (arrays
  larger than the limit; the run prints a note saying so).

Both give a step the same examples, so a run's result does not depend on the path (tested).
A batch holds ``x`` and ``y`` as stored, each example's index in its split ``i`` and the
``epoch``, from which a training pass draws the example's augmentation (``data/inputs.py``).
Multi-host: every process holds the whole arrays and feeds its local devices their slice of
each global batch (``parallel.local_shard``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from actsearch.train import parallel


def fits(arrays: Sequence[np.ndarray], limit_mb: float) -> bool:
  return sum(a.nbytes for a in arrays) <= limit_mb * 2 ** 20


class Feed:
  """Batches of ``pairs`` (one ``(x, y)`` per batch a step takes: search: train and val;
  retrain: one) for a step function.

  ``orders(epoch)`` gives each pair's indices for an epoch: ``[steps, batch]`` or, with
  ``members`` (seeds trained together under ``vmap``), ``[members, steps, batch]``.
  """

  def __init__(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
               orders: Callable[[int], Sequence[np.ndarray]], steps_per_epoch: int,
               limit_mb: float, members: bool = False, what: str = "data"):
    self.pairs = [(np.asarray(x), np.asarray(y)) for x, y in pairs]
    self.orders = orders
    self.steps_per_epoch = steps_per_epoch
    self.members = members
    self.resident = fits([a for p in self.pairs for a in p], limit_mb)
    self._arrays = None
    if not self.resident and jax.process_index() == 0:
      mb = sum(a.nbytes for p in self.pairs for a in p) / 2 ** 20
      print(f"actsearch: note: the {what} ({mb:.0f} MB) exceed data.resident_mb "
            f"({limit_mb:g}); batches are gathered on the host and copied every step",
            file=sys.stderr)

  def wrap(self, step_fn: Callable) -> Callable:
    """The per-device step: ``(state, arrays, orders) -> step_fn(state, *batches)`` where
    resident, ``step_fn`` itself otherwise."""
    if not self.resident:
      return step_fn
    spe = self.steps_per_epoch

    def fed(state, arrays, orders):
      row, epoch = state.step % spe, state.step // spe
      batches = [{"x": x[o[row]], "y": y[o[row]], "i": o[row],
                  "epoch": jnp.full_like(o[row], epoch)} for (x, y), o in zip(arrays, orders)]
      return step_fn(state, *batches)
    return fed

  def in_axes(self) -> tuple:
    """``vmap`` axes of the wrapped step's arguments (members: the state and the orders)."""
    if not self.resident:
      return (0,) * (1 + len(self.pairs))
    return (0, None, 0)

  def _local(self, order: np.ndarray) -> np.ndarray:
    """This process's part of each global batch, split over its local devices."""
    return parallel.local_shard(order, axis=order.ndim - 1)

  def batches(self, epoch: int, first: int, stop: int) -> Iterator[tuple]:
    """The step arguments after the state for steps ``[first, stop)`` of ``epoch``."""
    orders = self.orders(epoch)
    if self.resident:
      if self._arrays is None:
        self._arrays = parallel.replicate(self.pairs)
      local = parallel.replicate_sharded([self._local(o).astype(np.int32) for o in orders])
      for _ in range(first, stop):
        yield (self._arrays, local)
      return
    axis = 1 if self.members else 0
    for i in range(first, stop):
      yield tuple(_indexed(x, y, o[:, i] if self.members else o[i], epoch, axis)
                  for (x, y), o in zip(self.pairs, orders))


def _indexed(x: np.ndarray, y: np.ndarray, idx: np.ndarray, epoch: int, axis: int) -> dict:
  """A host batch with its examples' indices and epoch, sharded as ``parallel.batch``."""
  return {**parallel.batch(x, y, idx, axis=axis),
          "i": parallel.local_shard(idx.astype(np.int32), axis),
          "epoch": parallel.local_shard(np.full(idx.shape, epoch, np.int32), axis)}

