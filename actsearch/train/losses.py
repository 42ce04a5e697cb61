r"""Training losses by name: the two built in, and a user's own (``actsearch.register_loss``).

A loss is ``fn(outputs, labels) -> losses``: the network's outputs ``[B, m]`` and the batch's
labels (``[B]`` integers for classification, ``[B, m]`` floats for regression) to one loss per
example, ``[B]``, written with ``jax.numpy`` (it is traced into the compiled steps). The
objective averages it over a training batch and sums it over the unmasked examples of an
evaluation, so one definition serves the search's both passes, the shortlist and the retrain.

Built in (``data.loss = "auto"`` picks by the task):

* ``cross_entropy``: :math:`\ell_i = -\log \mathrm{softmax}(f(x_i))_{y_i}` (classification);
* ``squared_error``: :math:`\ell_i = \frac1m \lVert f(x_i) - y_i \rVert^2` (regression).

A user's loss changes what is minimised, not what is reported: classification still reports
accuracy (the shortlist and the retrain rank by it), regression its loss (by this loss). A
loss registered by a user's file or module is recorded by reference (``code``), as a
backbone is, and a fresh process needs that code passed (``--import``) to find it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from actsearch.errors import UserError, their_code
from actsearch.registry import Registry

Loss = Callable[[jax.Array, jax.Array], jax.Array]
AUTO = "auto"
BY_TASK = {"classification": "cross_entropy", "regression": "squared_error"}


def cross_entropy(out: jax.Array, y: jax.Array) -> jax.Array:
  """-log softmax(outputs)[label] (classification)."""
  return optax.softmax_cross_entropy_with_integer_labels(out, y)


def squared_error(out: jax.Array, y: jax.Array) -> jax.Array:
  """The mean over outputs of (output - target)^2 (regression)."""
  return jnp.mean((out - y) ** 2, axis=-1)


BUILTIN: dict[str, Loss] = {"cross_entropy": cross_entropy, "squared_error": squared_error}
LOSSES: Registry[Loss] = Registry("loss", "data.loss")
for _name, _fn in BUILTIN.items():
  LOSSES.add(_name, _fn, builtin=True)


def register(name: str):
  """Decorator: registers ``fn(outputs, labels) -> [B]`` as loss ``name`` (``data.loss``).

  >>> import jax.numpy as jnp, optax
  >>> import actsearch
  >>> @actsearch.register_loss("huber")
  ... def huber(outputs, labels):
  ...   return jnp.mean(optax.huber_loss(outputs, labels, delta=1.0), axis=-1)
  >>> c = actsearch.config()
  >>> c.data.loss = "huber"
  """
  if not isinstance(name, str) or not name or name == AUTO or name in BUILTIN:
    raise UserError(f"a loss needs a new name (not {', '.join([AUTO, *BUILTIN])}), "
                    f"got {name!r}")

  def wrap(fn: Loss) -> Loss:
    if not callable(fn):
      raise UserError(f"loss {name!r} must be a function (outputs, labels) -> [B]")
    return LOSSES.add(name, fn)
  return wrap


def resolve(name: str, task: str) -> str:
  """The loss a run minimises: ``name``, or the task's built-in one for ``auto``."""
  return BY_TASK[task] if name == AUTO else name


def check(name, code=(), where: str = "data.loss") -> None:
  """``name`` is ``auto`` or a registered loss; else one line (naming the user code to pass
  with ``--import`` where a run records some)."""
  if name != AUTO:
    LOSSES.require(name, code, where, extra=[AUTO])


def per_example(name: str, task: str, out: jax.Array, y: jax.Array) -> jax.Array:
  """``[B]`` losses of loss ``name`` (resolved for ``task``); a user's loss that returns
  another shape is one ``UserError``, an exception inside it is marked as the user's."""
  name = resolve(name, task)
  check(name)
  if name in BUILTIN:
    return BUILTIN[name](out, y)
  with their_code(f"loss {name!r}"):
    value = jnp.asarray(LOSSES[name](out, y))
  if value.shape != out.shape[:1]:
    raise UserError(f"loss {name!r} returned shape {tuple(value.shape)}; it must return one "
                    f"loss per example, shape ({out.shape[0]},)")
  return value.astype(out.dtype)
