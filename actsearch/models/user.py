"""A user's own Flax NNX model as a backbone: its activations marked where they are applied.

An activation called inline (``nnx.relu(h)`` in ``__call__``) is invisible to a traversal of
the module tree, so the user marks each place, one edit of its line::

    x = self.pool(nnx.relu(self.conv1(x)))                              # before
    x = self.pool(actsearch.slot(self, "conv1", nnx.relu)(self.conv1(x)))  # after

``slot(module, name, default)`` returns what that place computes:

* nothing attached (the model as the user built it): ``default``, so the model runs as before;
* while ``find`` records: ``default``, and the place is noted (module, name, input shape);
* once ``attach`` (a search or a retrain) or ``apply`` (a record) has given the module a
  ``Table`` of slots: its slot, a ``MixedActivation`` or a ``FixedActivation``.

A slot's full name is the attribute path of the module that calls it, joined with the name it
gives (``blocks/0/act``; in the top module the name alone), so blocks built in a loop name their
slots apart; a name called twice is one ``UserError``. A slot's channels are the last axis of
its input. ``find`` traces the model abstractly (``jax.eval_shape``): it computes nothing and
changes no state of the user's model.

The engine calls a backbone as ``model(x, key, train=...)``; ``Backbone`` wraps the user's
model so: it passes ``train`` on where the user's ``__call__`` takes it, and hands ``key`` to
the slots through a context variable, each slot folding in its own name, so a stochastic
relaxation (Gumbel, Dirichlet) samples in a model whose ``__call__`` threads no key. Before
every call the engine also sets the mode by Flax's own switch (``network.merge``:
``model.train()`` / ``model.eval()``), so a model whose layers read their mode from their
attributes (``nnx.BatchNorm``, ``nnx.Dropout``, ``nnx.MultiHeadAttention``) and a model that
takes ``train`` are run alike.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from actsearch.errors import UserError, their_code
from actsearch.models import network, registry
from actsearch.space import activations
from actsearch.space.mixed import slot_key

TABLE = "actsearch_slots"  # the attribute a module's slots are attached under
_RECORDING: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "actsearch_recording", default=None)
_KEY: contextvars.ContextVar[jax.Array | None] = contextvars.ContextVar(
    "actsearch_key", default=None)


class Table(nnx.Module):
  """The slots one module of a user's model calls, by the names it gives them."""

  def __init__(self, slots: Mapping[str, nnx.Module]):
    self.slots = nnx.Dict(dict(slots))


@dataclass(frozen=True)
class Place:
  """One marked activation: its full name, the path of the module calling it, the name that
  module gives it, and its channels (the input's last axis)."""
  name: str
  path: tuple
  local: str
  channels: int


def _plain(default: str | Callable) -> Callable:
  if callable(default):
    return default
  cand = activations.get(default)  # an unknown name: one UserError
  if cand.params:
    raise UserError(f"slot default {default!r} has parameters; give a parameter-free "
                    "activation (a name such as 'relu', or a function)")
  return cand.fn


def slot(module: nnx.Module, name: str, default: str | Callable = "relu") -> Callable:
  """The activation at one marked place of ``module``'s ``__call__`` (module docstring).

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> import actsearch
  >>> class Tiny(nnx.Module):
  ...   def __call__(self, x):
  ...     return actsearch.slot(self, "act", "tanh")(x)
  >>> float(Tiny()(jnp.array(0.5))) == float(jnp.tanh(0.5))  # nothing attached: the default
  True
  >>> [p.name for p in actsearch.models.user.find(Tiny(), jnp.ones((2, 3)))]
  ['act']
  """
  if not isinstance(module, nnx.Module):
    raise UserError(f"actsearch.slot takes the module that applies the activation (self), got "
                    f"{type(module).__name__}")
  if not isinstance(name, str) or not name or "/" in name:
    raise UserError(f"a slot's name is a non-empty string without '/', got {name!r}")
  plain = _plain(default)

  def call(x: jax.Array) -> jax.Array:
    recording = _RECORDING.get()
    if recording is not None:
      recording.append((module, name, tuple(x.shape)))
      return plain(x)
    table = vars(module).get(TABLE)
    if table is None:
      return plain(x)
    if name not in table.slots:
      raise UserError(f"{type(module).__name__} calls slot {name!r}, which the attached "
                      f"architecture does not hold (it holds {', '.join(table.slots)})")
    found = table.slots[name]
    key = _KEY.get()
    return found(x, None if key is None else slot_key(key, found.slot_name))
  return call


def _modules(model: nnx.Module) -> dict[int, tuple]:
  return {id(node): path for path, node in nnx.iter_graph(model) if isinstance(node, nnx.Module)}


def find(model: nnx.Module, *args, **kwargs) -> list[Place]:
  """The marked places of ``model``, in the order its call reaches them, found by tracing
  ``model(*args, **kwargs)`` abstractly in eval mode (``train=False`` where its ``__call__``
  takes ``train``; nothing computed, the model's state and mode untouched)."""
  graphdef, state = nnx.split(model)
  calls: list = []
  paths: dict[int, tuple] = {}

  takes_train = _takes(type(model).__call__, "train") and "train" not in kwargs

  def trace(state, args, kwargs):
    copy = network.set_mode(nnx.merge(graphdef, state), train=False)
    network.sync_batch_norm(copy, None)
    paths.update(_modules(copy))
    token = _RECORDING.set(calls)
    try:
      return copy(*args, **kwargs, **({"train": False} if takes_train else {}))
    finally:
      _RECORDING.reset(token)
  with their_code(f"{type(model).__name__}.__call__"):
    jax.eval_shape(trace, state, args, kwargs)
  places, seen = [], set()
  for module, local, shape in calls:
    if id(module) not in paths:
      raise UserError(f"actsearch.slot({type(module).__name__}, {local!r}) is called with a "
                      "module that is not part of the model")
    path = tuple(paths[id(module)])
    full = "/".join([*map(str, path), local])
    if full in seen:
      raise UserError(f"the model calls slot {full!r} twice; slot names must be unique (give "
                      "each place its own name)")
    seen.add(full)
    places.append(Place(full, path, local, int(shape[-1]) if shape else 1))
  return places


def attach(model: nnx.Module, places: Sequence[Place],
           make: Callable[[str, int], nnx.Module]) -> nnx.Module:
  """Gives each module that calls slots a ``Table`` of ``make(full_name, channels)``; the
  slots keep the order of ``places``. Returns ``model``, changed in place."""
  nodes = {tuple(path): node for path, node in nnx.iter_graph(model)
           if isinstance(node, nnx.Module)}
  tables: dict[tuple, dict[str, nnx.Module]] = {}
  for order, place in enumerate(places):
    made = make(place.name, place.channels)
    made.slot_order = order
    tables.setdefault(place.path, {})[place.local] = made
  for path, slots in tables.items():
    setattr(nodes[path], TABLE, Table(slots))
  return model


def _takes(fn: Callable, name: str) -> bool:
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False
  return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class Backbone(nnx.Module):
  """A user's model called as the engine calls a backbone: ``model(x, key=None, *,
  train=True)``."""

  def __init__(self, model: nnx.Module):
    self.model = model
    self.takes_train = _takes(type(model).__call__, "train")

  def __call__(self, x: jax.Array, key: jax.Array | None = None, *, train: bool = True):
    token = _KEY.set(key)
    try:
      return self.model(x, train=train) if self.takes_train else self.model(x)
    finally:
      _KEY.reset(token)


def _factory_kwargs(factory: Callable, model_cfg, input_shape, num_outputs, rngs) -> dict:
  offered = {"rngs": rngs, "input_shape": tuple(input_shape), "num_outputs": num_outputs,
             "config": model_cfg}
  target = factory.__init__ if isinstance(factory, type) else factory  # a class: its __init__
  return {k: v for k, v in offered.items() if _takes(target, k)}


def register_model(name: str, factory: Callable[..., nnx.Module] | None = None):
  """Registers ``factory`` (keywords it may take: ``rngs``, ``input_shape``, ``num_outputs``,
  ``config``, the run's ``model`` config) as backbone ``name``; usable as a decorator.

  >>> import jax.numpy as jnp
  >>> import ml_collections
  >>> from flax import nnx
  >>> import actsearch
  >>> from actsearch import models
  >>> @actsearch.register_model("doc_net")
  ... class DocNet(nnx.Module):
  ...   def __init__(self, *, input_shape, num_outputs, rngs):
  ...     self.hidden = nnx.Linear(input_shape[0], 4, rngs=rngs)
  ...     self.out = nnx.Linear(4, num_outputs, rngs=rngs)
  ...   def __call__(self, x):
  ...     return self.out(actsearch.slot(self, "act", nnx.relu)(self.hidden(x)))
  >>> rngs = nnx.Rngs(0)
  >>> slots = models.search_slots(["relu", "tanh"], "softmax", "layer", rngs)
  >>> net = models.build(ml_collections.ConfigDict({"name": "doc_net"}), (3,), 2, slots, rngs)
  >>> [name for name, _ in models.slots(net)], net(jnp.ones((5, 3))).shape
  (['act'], (5, 2))
  """
  def wrap(factory: Callable[..., nnx.Module]):
    def builder(model_cfg, input_shape, num_outputs, make, rngs):
      with their_code(f"the factory of model {name!r}"):
        model = factory(**_factory_kwargs(factory, model_cfg, input_shape, num_outputs, rngs))
      if not isinstance(model, nnx.Module):
        raise UserError(f"model {name!r}: the factory returned {type(model).__name__}, not an "
                        "nnx.Module")
      example = jnp.zeros((1, *input_shape), jnp.float32)
      places = find(model, example)
      if not places:
        raise UserError(f"model {name!r} marks no activation; mark each with "
                        "actsearch.slot(self, name, default)(x)")
      return Backbone(attach(model, places, make))
    builder.__module__ = factory.__module__  # the user's code, recorded by the registry
    builder.__qualname__ = getattr(factory, "__qualname__", name)
    registry.register(name)(builder)
    return factory
  return wrap if factory is None else wrap(factory)

