"""Discretization: a table of methods that turn a searched supernet into one choice per slot.

A method takes the slots of the supernet, as ``SlotView``s (name, relaxed weights ``[K]`` or
per channel ``[C, K]``, candidate names, learned parameters of parametric candidates), and
returns one ``architecture.json`` layer per slot. ``search.discretize`` names the method.

* ``argmax``: the candidate with the largest relaxed weight (DARTS, Liu et al. 2019); with
  per-channel granularity, one argmax per channel, and the layer's ``choice`` is the argmax
  of the weights averaged over channels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from actsearch import models
from actsearch.errors import UserError


@dataclasses.dataclass(frozen=True)
class SlotView:
  name: str
  weights: np.ndarray                  # [K] or [C, K]
  candidates: tuple[str, ...]
  params: dict[str, dict[str, np.ndarray]]


def slot_views(model) -> list[SlotView]:
  """The searchable slots of a supernet, with deterministic (unsampled) weights."""
  return [SlotView(name, np.asarray(slot.weights(None), np.float64),
                   tuple(c.name for c in slot.candidates),
                   jax.tree.map(np.asarray, slot.candidate_params()))
          for name, slot in models.slots(model)]


def _layer(view: SlotView, choice: str, channel_choices: Sequence[str] | None) -> dict[str, Any]:
  mean = view.weights.reshape(-1, len(view.candidates)).mean(0)
  layer = {"name": view.name, "choice": choice,
           "weights": {c: float(w) for c, w in zip(view.candidates, mean)}}
  chosen = {choice}
  if channel_choices is not None:
    layer["channel_choices"] = list(channel_choices)
    chosen = set(channel_choices)
  layer["params"] = {c: {p: np.asarray(v).tolist() for p, v in ps.items()}
                     for c, ps in view.params.items() if c in chosen and ps}
  return layer


def argmax(views: Sequence[SlotView]) -> list[dict[str, Any]]:
  """The largest relaxed weight of each slot (of each channel, with channel granularity)."""
  layers = []
  for view in views:
    mean = view.weights.reshape(-1, len(view.candidates)).mean(0)
    choice = view.candidates[int(np.argmax(mean))]
    channels = None
    if view.weights.ndim == 2:
      channels = [view.candidates[int(i)] for i in np.argmax(view.weights, -1)]
    layers.append(_layer(view, choice, channels))
  return layers


METHODS: dict[str, Callable[[Sequence[SlotView]], list[dict[str, Any]]]] = {"argmax": argmax}


def get(name: str):
  if name not in METHODS:
    raise UserError(f"search.discretize is {name!r}; known: {', '.join(METHODS)}")
  return METHODS[name]
