"""Device helpers shared by every command: one copy of the state per device, batches split
over devices and processes, replica checks, and the ``pmap`` wrapper.

Axis ``data``: inside a pmapped step, ``lax.pmean`` over it averages gradients and metrics, so
every device holds the same state and the result does not depend on the device count. In a
multi-host run each process holds its local devices and loads its own slice of each batch.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from actsearch.errors import UserError

AXIS = "data"


def replicate(tree):
  """One copy of ``tree`` per local device, placed as ``pmap`` outputs are (so that the
  first step does not compile for other input shardings than the rest)."""
  n = jax.local_device_count()
  stacked = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n, *np.shape(x))), tree)
  return _identity(stacked)


_identity = jax.pmap(lambda tree: tree, axis_name=AXIS)


def replicate_sharded(tree):
  """A pytree whose leaves lead with the local-device axis, slice ``i`` placed on device
  ``i`` (as ``pmap`` inputs are)."""
  return _identity(tree)


def unreplicate(tree):
  """The first local replica of a pmapped pytree, as numpy."""
  return unreplicate_all([tree])[0]


def unreplicate_all(trees: list) -> list:
  """``unreplicate`` of many pytrees with one transfer: the first replicas of all leaves are
  copied to the host together (one device sync, not one per leaf)."""
  leaves, treedef = jax.tree.flatten(trees)
  first = [x.addressable_data(0) for x in leaves]
  host = [np.asarray(h).reshape(x.shape[1:]) for h, x in zip(jax.device_get(first), leaves)]
  return jax.tree.unflatten(treedef, host)


def assert_replicated(tree, what: str) -> None:
  """Raises if the local replicas of a pmapped pytree differ (they must stay identical)."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    first = np.asarray(leaf.addressable_data(0))
    for i in range(1, len(leaf.addressable_shards)):
      if not np.array_equal(np.asarray(leaf.addressable_data(i)), first):
        raise RuntimeError(f"{what}{jax.tree_util.keystr(path)} differs between device 0 and "
                           f"device {i}: the replicas have diverged")


def shard(x: np.ndarray, num_shards: int, axis: int = 0) -> np.ndarray:
  """Splits ``axis`` (the batch) into a new leading device axis: ``[..., B, ...] ->
  [num_shards, ..., B // num_shards, ...]`` for ``pmap``."""
  size = x.shape[axis]
  if size % num_shards:
    raise UserError(f"batch size {size} is not divisible by {num_shards} devices")
  parts = x.reshape(*x.shape[:axis], num_shards, size // num_shards, *x.shape[axis + 1:])
  return np.moveaxis(parts, axis, 0)


def local_shard(x: np.ndarray, axis: int = 0) -> np.ndarray:
  """This process's slice of a global batch (on ``axis``), split over its local devices."""
  per_process = x.shape[axis] // jax.process_count()
  start = jax.process_index() * per_process
  mine = np.take(x, np.arange(start, start + per_process), axis=axis)
  return shard(mine, jax.local_device_count(), axis)


def batch(x: np.ndarray, y: np.ndarray, idx: np.ndarray, axis: int = 0) -> dict[str, np.ndarray]:
  """The examples ``idx`` (batch on ``axis`` of ``idx``), sharded for this process."""
  return {"x": local_shard(x[idx], axis), "y": local_shard(y[idx], axis)}


def pmean(tree, axis_name: str | None):
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def pmean_floats(tree, axis_name: str | None):
  """``pmean`` of the floating-point leaves (batch statistics); others are left as they are."""
  if axis_name is None:
    return tree
  return jax.tree.map(lambda x: jax.lax.pmean(x, axis_name)
                      if jax.numpy.issubdtype(x.dtype, jax.numpy.floating) else x, tree)


def pmapped(fn: Callable, donate_state: bool = True, **kwargs):
  """``fn`` under ``pmap`` over all local devices on axis ``data``; the first argument
  (the state) is donated."""
  return jax.pmap(fn, axis_name=AXIS, donate_argnums=(0,) if donate_state else (), **kwargs)
