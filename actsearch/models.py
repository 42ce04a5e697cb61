"""Backbones whose activation slots are mixed (search) or fixed (retrain).

A backbone is built from its config and a ``slot`` factory ``slot(name, channels)``
that returns a ``MixedActivation`` or a ``FixedActivation``; ``search_slots`` and
``fixed_slots`` make the two factories. Slots are named ``block{i}/act``.

* ``mlp``: ``Linear(w_i) -> slot`` for each width in ``model.widths``, then a linear head.
* ``cnn1d``: the MNIST-1D convolutional baseline (Greydanus 2020): three 1-D
  convolutions (kernel 5, 3, 3; stride 2; padding 1; 25 channels by default), each
  followed by a slot, then a linear head on the flattened features.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx

from actsearch.errors import UserError
from actsearch.mixed import FixedActivation, MixedActivation
from actsearch.taps import Dense

SlotFactory = Callable[[str, int], nnx.Module]


def slot_name(i: int) -> str:
  return f"block{i}/act"


class MLP(nnx.Module):

  def __init__(self, in_features: int, widths: Sequence[int], num_outputs: int,
               slot: SlotFactory, *, rngs: nnx.Rngs):
    dims = [in_features, *widths]
    self.layers = nnx.List([Dense(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
    self.acts = nnx.List([slot(slot_name(i), w) for i, w in enumerate(widths)])
    self.head = Dense(dims[-1], num_outputs, rngs=rngs)

  def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    for i, (layer, act) in enumerate(zip(self.layers, self.acts)):
      x = act(layer(x), None if key is None else jax.random.fold_in(key, i))
    return self.head(x)


class CNN1D(nnx.Module):

  def __init__(self, length: int, in_channels: int, widths: Sequence[int], num_outputs: int,
               slot: SlotFactory, *, kernel_sizes: Sequence[int] = (5, 3, 3), rngs: nnx.Rngs):
    if len(kernel_sizes) != len(widths):
      raise UserError(f"model.kernel_sizes has {len(kernel_sizes)} entries for "
                      f"{len(widths)} widths")
    chans = [in_channels, *widths]
    self.convs = nnx.List([
        nnx.Conv(a, b, kernel_size=(k,), strides=(2,), padding=[(1, 1)], rngs=rngs)
        for a, b, k in zip(chans[:-1], chans[1:], kernel_sizes)])
    self.acts = nnx.List([slot(slot_name(i), w) for i, w in enumerate(widths)])
    for k in kernel_sizes:
      length = (length + 2 - k) // 2 + 1
    if length < 1:
      raise UserError("the input is too short for the convolutions of model.widths")
    self.head = Dense(length * chans[-1], num_outputs, rngs=rngs)

  def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    if x.ndim == 2:
      x = x[..., None]  # [batch, length] -> [batch, length, 1 channel]
    for i, (conv, act) in enumerate(zip(self.convs, self.acts)):
      x = act(conv(x), None if key is None else jax.random.fold_in(key, i))
    return self.head(x.reshape(x.shape[0], -1))


def search_slots(candidates: Sequence[str], relaxation: str, granularity: str,
                 rngs: nnx.Rngs, temperature: float = 1.0, use_fused: bool = True) -> SlotFactory:
  def make(name: str, channels: int) -> nnx.Module:
    del name
    return MixedActivation(candidates, channels=channels, granularity=granularity,
                           relaxation=relaxation, temperature=temperature,
                           use_fused=use_fused, rngs=rngs)
  return make


def fixed_slots(layers: Mapping[str, Mapping]) -> SlotFactory:
  """Factory from architecture layers ``{name: {"choice", "params", ["channel_choices"]}}``."""
  def make(name: str, channels: int) -> nnx.Module:
    if name not in layers:
      raise UserError(f"the architecture has no slot {name!r} (it has {', '.join(layers)})")
    layer = layers[name]
    choice = layer.get("channel_choices") or layer["choice"]
    return FixedActivation(choice, channels=channels, params=layer.get("params"))
  return make


def uniform_slots(name: str) -> SlotFactory:
  """Every slot fixed to one candidate (the baselines)."""
  return lambda slot, channels: FixedActivation(name, channels=channels)


def build(model_cfg: ml_collections.ConfigDict, input_shape: Sequence[int], num_outputs: int,
          slot: SlotFactory, rngs: nnx.Rngs) -> nnx.Module:
  """Builds ``model_cfg.name`` for inputs of shape ``input_shape`` (no batch axis)."""
  widths = [int(w) for w in model_cfg.widths]
  if not widths or min(widths) < 1:
    raise UserError(f"model.widths must be a non-empty list of positive integers, got {widths}")
  if model_cfg.name == "mlp":
    return MLP(int(np.prod(input_shape)), widths, num_outputs, slot, rngs=rngs)
  if model_cfg.name == "cnn1d":
    if len(input_shape) not in (1, 2):
      raise UserError(f"cnn1d needs inputs of shape [length] or [length, channels], "
                      f"got {list(input_shape)}")
    in_ch = 1 if len(input_shape) == 1 else input_shape[1]
    kernels = tuple(model_cfg.get("kernel_sizes", (5, 3, 3)))
    return CNN1D(input_shape[0], in_ch, widths, num_outputs, slot, kernel_sizes=kernels, rngs=rngs)
  raise UserError(f"unknown model.name {model_cfg.name!r}; known: mlp, cnn1d")


def slots(model: nnx.Module) -> list[tuple[str, nnx.Module]]:
  """The activation slots of a backbone, in order, with their names."""
  return [(slot_name(i), act) for i, act in enumerate(model.acts)]


def param_count(model: nnx.Module) -> int:
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


