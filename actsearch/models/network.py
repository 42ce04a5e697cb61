"""A model as the engine runs it, in Flax NNX's own idioms: its random streams, its train and
eval modes, its batch norm, and its split into the state the engine keeps.

* **Streams.** ``rngs(seed)`` builds a model with the streams Flax's layers ask for:
  ``params`` (the seed itself, so weights start as they always did), ``dropout`` and
  ``default`` (the seed's key folded with the stream's name).
* **State.** ``split_model`` gives ``graphdef, params, arch, rest``: the weights
  (``nnx.Param``), alpha (``ArchParam``) and everything else (batch statistics, constants of
  fixed slots, and the random streams of layers built with ``rngs=``, such as
  ``nnx.Dropout(rate, rngs=rngs)``). A stream's key is kept as its key data (``uint32``), so
  the state is plain arrays that checkpoints, stacks and device copies read as any other.
* **A call.** ``merge`` rebuilds the model for one forward pass: from copies of the state's
  variables (a batch statistic updated under ``jax.grad`` is then a variable of that trace),
  in train or eval mode by Flax's own switch (``model.train()`` / ``model.eval()``:
  ``deterministic`` and ``use_running_average`` of every submodule), whatever mode the model
  was built or handed over in, with every ``nnx.BatchNorm`` reducing its batch statistics
  over ``axis_name`` (the device axis of the program that runs under ``pmap``; None
  elsewhere), and, given a ``draw``, every stream reseeded from its stored key folded with the
  draw (the step, the device, the pass), so that a resumed run draws the same dropout masks
  and no draw depends on how often a stream was called before. ``rest_after`` is the state
  after the call: the new batch statistics, the streams as they were stored.

Batch norm follows the field's convention (Ioffe & Szegedy 2015; Flax's ImageNet example
with ``axis_name``): in train mode, the statistics of the global batch (synchronised across
devices in the forward pass), running averages updated and kept in the state; in eval mode,
the running averages.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from actsearch.space.mixed import ArchParam

STREAMS = ("params", "dropout", "default")


def stream_key(seed: int, name: str) -> jax.Array:
  """Stream ``name``'s key of a model built with ``seed``: the seed's key folded with the
  name's CRC-32 (``params`` is the seed's key itself)."""
  base = jax.random.key(seed)
  return base if name == "params" else jax.random.fold_in(base, zlib.crc32(name.encode()))


def rngs(seed: int) -> nnx.Rngs:
  """The ``nnx.Rngs`` a model is built with: ``params``, ``dropout`` and ``default``, from
  ``seed``.

  >>> r = rngs(0)
  >>> [name in r for name in ("params", "dropout", "default")]
  [True, True, True]
  """
  return nnx.Rngs(**{name: stream_key(seed, name) for name in STREAMS})


def set_mode(model: nnx.Module, train: bool) -> nnx.Module:
  """Flax's own switch (``model.train()`` / ``model.eval()``) on ``model``, in place: every
  submodule's ``deterministic`` (dropout, attention dropout) and ``use_running_average``
  (batch norm). Called as ``nnx.Module``'s method, so a model with an attribute named
  ``train`` is switched too."""
  nnx.Module.set_attributes(model, deterministic=not train, use_running_average=not train,
                            raise_if_not_found=False)
  return model


def sync_batch_norm(model: nnx.Module, axis_name: str | None) -> None:
  """Every ``nnx.BatchNorm`` of ``model`` reduces its batch statistics over ``axis_name``."""
  for _, node in nnx.iter_graph(model):
    if isinstance(node, nnx.BatchNorm):
      node.axis_name = axis_name


def batch_norm_paths(model: nnx.Module) -> frozenset:
  """The paths of ``model``'s ``nnx.BatchNorm`` layers (their scale and bias are decayed
  apart: ``optim.weight_optimizer``)."""
  return frozenset(tuple(path) for path, node in nnx.iter_graph(model)
                   if isinstance(node, nnx.BatchNorm))


def _is_var(x) -> bool:
  return isinstance(x, nnx.Variable)


def _key_to_data(v):
  if isinstance(v, nnx.RngKey) and jnp.issubdtype(v[...].dtype, jax.dtypes.prng_key):
    return v.replace(jax.random.key_data(v[...]))
  return v


def split_model(model: nnx.Module):
  """``graphdef, params, arch, rest`` of a model: weights, alpha, everything else (streams'
  keys as key data)."""
  graphdef, params, arch, rest = nnx.split(model, nnx.Param, ArchParam, ...)
  return graphdef, params, arch, jax.tree.map(_key_to_data, rest, is_leaf=_is_var)


def has_streams(rest) -> bool:
  """Whether a model's ``rest`` holds random streams (dropout built with ``rngs=``)."""
  return any(isinstance(v, nnx.RngState) for v in jax.tree.leaves(rest, is_leaf=_is_var))


def has_batch_stats(rest) -> bool:
  """Whether a model's ``rest`` holds batch statistics (batch norm)."""
  return any(isinstance(v, nnx.BatchStat) for v in jax.tree.leaves(rest, is_leaf=_is_var))


def _streams_for_call(rest, draw: Sequence | None):
  """``rest`` with each stream's key data a typed key, folded with every entry of ``draw``,
  and its count at 0 (``draw`` None: the stored key, the stored count)."""
  def one(v):
    if isinstance(v, nnx.RngKey):
      key = v[...]
      key = jax.random.wrap_key_data(key) if not jnp.issubdtype(key.dtype,
                                                                jax.dtypes.prng_key) else key
      for d in draw or ():
        key = jax.random.fold_in(key, d)
      return v.replace(key)
    if isinstance(v, nnx.RngCount) and draw is not None:
      return v.replace(jnp.zeros_like(v[...]))
    return v
  return jax.tree.map(one, rest, is_leaf=_is_var)


def merge(graphdef, params, arch, rest, *, train: bool, axis_name: str | None = None,
          draw: Sequence | None = None) -> nnx.Module:
  """The model for one forward pass (module docstring): copies of the variables, the mode
  set, batch norm over ``axis_name``, streams reseeded by ``draw`` (integers or integer
  arrays folded into each stream's key in turn)."""
  model = nnx.merge(graphdef, params, arch, _streams_for_call(rest, draw), copy=True)
  set_mode(model, train)
  sync_batch_norm(model, axis_name if train else None)
  return model


def rest_after(model: nnx.Module, rest):
  """The non-weight state of ``model`` after a call, shaped as ``rest`` (the state it was
  merged from): new batch statistics and constants, the streams as ``rest`` stored them."""
  new = nnx.state(model, nnx.Not(nnx.Any(nnx.Param, ArchParam)))
  return jax.tree.map(lambda old, now: old if isinstance(old, nnx.RngState) else now,
                      rest, new, is_leaf=_is_var)
