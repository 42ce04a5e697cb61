"""The backbone registry, slot factories and slot discovery.

A backbone is built from its config and a ``slot`` factory ``slot(name, channels)`` that
returns a ``MixedActivation`` or a ``FixedActivation`` (``search_slots``, ``fixed_slots``,
``uniform_slots``). ``build`` hands the backbone the factory bound to each slot's own random
stream (``mixed.slot_key``: the seed folded with the slot's name), so that what one slot
draws (a learned candidate's random start) changes nothing else. Each module of this
package defines one backbone and registers its builder with ``@register(name)``. Every
backbone is called as ``model(x, key=None, *, train=True)``: ``key`` drives stochastic
relaxations, ``train`` switches layers that behave differently in training (batch
statistics, dropout). Slot names are unique in a model (a duplicate is one ``UserError``).

Slots are found by type (``slots``), not through an attribute of the backbone, and carry
their own names; today's backbones name them ``block{i}/act``, the names that
``architecture.json`` files and TensorBoard tags use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx

from actsearch.errors import UserError
from actsearch.registry import Registry
from actsearch.space import activations
from actsearch.space.mixed import (
  FixedActivation,
  MixedActivation,
  Slot,
  SwitchActivation,
  rngs_key,
  slot_key,
)

SlotFactory = Callable[..., nnx.Module]  # slot(name, channels, key=None)
Builder = Callable[[ml_collections.ConfigDict, Sequence[int], int, SlotFactory, nnx.Rngs],
                   nnx.Module]
def _doc(builder: Builder) -> str:
  """A backbone's line in listings: its builder's docstring, else its module's."""
  import sys

  text = builder.__doc__ or getattr(sys.modules.get(builder.__module__), "__doc__", "") or ""
  return text.strip().split("\n")[0]


BACKBONES: Registry[Builder] = Registry("backbone", "model.name", describe=_doc)


def register(name: str):
  """Decorator: registers ``builder(model_cfg, input_shape, num_outputs, slot, rngs)``."""
  return lambda builder: BACKBONES.add(name, builder)


def widths_of(model_cfg: ml_collections.ConfigDict) -> list[int]:
  """``model.widths`` of the built-in backbones: a non-empty list of positive integers."""
  widths = [int(w) for w in model_cfg.get("widths") or []]
  if not widths or min(widths) < 1:
    raise UserError(f"model.widths must be a non-empty list of positive integers, got {widths}")
  return widths


def slot_name(i: int) -> str:
  return f"block{i}/act"


def search_slots(candidates: Sequence[str], relaxation: str, granularity: str,
                 rngs: nnx.Rngs, temperature: float = 1.0, use_fused: bool = True,
                 normalize: bool = False, clamp: float = 0.0,
                 implementation: str = "auto", param_granularity: str | None = None,
                 slot_candidates: Mapping[str, Sequence[str]] | None = None) -> SlotFactory:
  """Mixed slots; ``slot_candidates`` gives some slots (by name) their own candidates."""
  per_slot = dict(slot_candidates or {})

  def make(name: str, channels: int, key=None) -> nnx.Module:
    return MixedActivation(per_slot.get(name, candidates), channels=channels,
                           granularity=granularity, relaxation=relaxation,
                           temperature=temperature, use_fused=use_fused, rngs=rngs, name=name,
                           normalize=normalize, clamp=clamp, implementation=implementation,
                           param_granularity=param_granularity, key=key)
  return make


def fixed_slots(layers: Mapping[str, Mapping], param_granularity: str = "layer",
                learned: bool = True) -> SlotFactory:
  """Factory from architecture layers ``{name: {"choice", "params", ["channel_choices"]}}``
  (``params`` as ``{candidate: {param: array}}``); ``learned`` False starts every parameter
  from its candidate's initial value instead of the record's."""
  def make(name: str, channels: int, key=None) -> nnx.Module:
    if name not in layers:
      raise UserError(f"the architecture has no slot {name!r} (it has {', '.join(layers)})")
    layer = layers[name]
    choice = layer.get("channel_choices") or layer["choice"]
    return FixedActivation(choice, channels=channels,
                           params=layer.get("params") if learned else None, name=name,
                           param_granularity=param_granularity, key=key)
  return make


def record_slots(arch: Mapping, learned: bool = True) -> SlotFactory:
  """``fixed_slots`` of an ``architecture.json`` record (checked: ``architecture.validate``):
  each slot its choice, with the record's learned parameters (``learned`` False: the
  candidates' initial values), at the record's parameter granularity."""
  layers = {layer["name"]: {**layer, "params": activations.params_from_record(
      layer.get("params", {}))} for layer in arch["layers"]}
  return fixed_slots(layers, arch.get("param_granularity") or "layer", learned=learned)


def uniform_slots(candidate: str, param_granularity: str = "layer") -> SlotFactory:
  """Every slot fixed to one candidate (the baselines)."""
  return lambda name, channels, key=None: FixedActivation(
      candidate, channels=channels, name=name, param_granularity=param_granularity, key=key)


def switch_slots(candidates: Sequence[str], param_granularity: str = "layer") -> SlotFactory:
  """Every slot holds all ``candidates`` and computes the one its ``index`` names
  (``SwitchActivation``): networks that differ only in their choices share one graph."""
  return lambda name, channels, key=None: SwitchActivation(
      candidates, channels=channels, name=name, param_granularity=param_granularity, key=key)


def build(model_cfg: ml_collections.ConfigDict, input_shape: Sequence[int], num_outputs: int,
          slot: SlotFactory, rngs: nnx.Rngs) -> nnx.Module:
  """Builds ``model_cfg.name`` for inputs of shape ``input_shape`` (no batch axis); the
  other keys of ``model_cfg`` are the backbone's own business."""
  builder = BACKBONES.require(model_cfg.name)
  base = rngs_key(rngs)
  seen: set[str] = set()

  def keyed(name: str, channels: int) -> nnx.Module:
    if name in seen:
      raise UserError(f"model {model_cfg.name!r} names two slots {name!r}; slot names must be "
                      "unique")
    seen.add(name)
    return slot(name, channels, key=slot_key(base, name))
  return builder(model_cfg, tuple(input_shape), num_outputs, keyed, rngs)


def slots(model: nnx.Module) -> list[tuple[str, Slot]]:
  """The activation slots of a backbone with their names, in the order of the module tree
  (a user's model, ``models/user.py``: the order its call reaches them)."""
  found = []
  for path, node in nnx.iter_graph(model):
    if isinstance(node, Slot):
      found.append((node.slot_name or "/".join(map(str, path)), node))
  if found and all(s.slot_order is not None for _, s in found):  # a user's model: call order
    found.sort(key=lambda item: item[1].slot_order)
  return found


def param_count(model: nnx.Module) -> int:
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))

