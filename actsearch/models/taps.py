r"""Dense layers that a tape can watch: their inputs, and the gradient at their outputs.

For a dense layer :math:`z = x W + b` applied to a batch, the weight gradient factors as

.. math::  \nabla_W L = X^\top \Delta, \qquad \nabla_b L = \mathbf 1^\top \Delta,

with :math:`X` ``[B, in]`` the layer's inputs and :math:`\Delta = \partial L / \partial z`
``[B, out]``. A :class:`Tape` records :math:`X` and adds a perturbation :math:`p` (zeros) to
:math:`z`, so that :math:`\partial L/\partial p = \Delta`. The exact second-order
hypergradient uses this to work with the factors (``[B, in]`` and ``[B, out]``) instead of
weight-shaped gradients (``[in, out]``), which is cheaper when the batch is smaller than the
layer (``bilevel.hypergradient``).

Outside a tape, :class:`Dense` is ``nnx.Linear``.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

import jax
from flax import nnx

_ACTIVE: contextvars.ContextVar[Tape | None] = contextvars.ContextVar("actsearch_tape",
                                                                        default=None)
Path = tuple


class Dense(nnx.Linear):
  """``nnx.Linear`` that reports to the active tape, if any."""

  def __call__(self, x: jax.Array) -> jax.Array:
    z = super().__call__(x)
    tape = _ACTIVE.get()
    return z if tape is None else tape.watch(self, x, z)


class Tape:
  """Records the inputs of every :class:`Dense` of one model call, by the layer's path in the
  model, and adds ``perturbations[path]`` to its output (none: shapes only)."""

  def __init__(self, perturbations: dict[Path, jax.Array] | None = None):
    self.perturbations = perturbations
    self.inputs: dict[Path, jax.Array] = {}
    self.output_shapes: dict[Path, Any] = {}
    self.repeated = False  # a layer called twice: its gradient is no longer X^T Delta
    self._paths: dict[int, Path] = {}

  @contextlib.contextmanager
  def watching(self, model: nnx.Module):
    """Active while ``model`` (a merged graph) runs."""
    self._paths = {id(m): path for path, m in nnx.iter_modules(model) if isinstance(m, Dense)}
    token = _ACTIVE.set(self)
    try:
      yield self
    finally:
      _ACTIVE.reset(token)

  def watch(self, layer: Dense, x: jax.Array, z: jax.Array) -> jax.Array:
    path = self._paths.get(id(layer))
    if path is None or x.ndim != 2:  # not part of the model, or not a plain [B, in] input
      return z
    if path in self.inputs:
      self.repeated = True
      return z
    self.inputs[path] = x
    self.output_shapes[path] = jax.ShapeDtypeStruct(z.shape, z.dtype)
    if self.perturbations is None:
      return z
    return z + self.perturbations[path]
