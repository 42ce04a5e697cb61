"""``mlp``: ``Dense(w_i) -> slot`` for each width in ``model.widths``, then a dense head."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from actsearch.models import registry as models
from actsearch.models.taps import Dense


class MLP(nnx.Module):

  def __init__(self, in_features: int, widths: Sequence[int], num_outputs: int,
               slot: models.SlotFactory, *, rngs: nnx.Rngs):
    dims = [in_features, *widths]
    self.layers = nnx.List([Dense(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
    self.acts = nnx.List([slot(models.slot_name(i), w) for i, w in enumerate(widths)])
    self.head = Dense(dims[-1], num_outputs, rngs=rngs)

  def __call__(self, x: jax.Array, key: jax.Array | None = None, *,
               train: bool = True) -> jax.Array:
    del train  # no layer here behaves differently in training
    x = x.reshape(x.shape[0], -1)
    for i, (layer, act) in enumerate(zip(self.layers, self.acts)):
      x = act(layer(x), None if key is None else jax.random.fold_in(key, i))
    return self.head(x)


@models.register("mlp")
def build(cfg, input_shape, num_outputs, slot, rngs):
  return MLP(int(np.prod(input_shape)), models.widths_of(cfg), num_outputs, slot,
             rngs=rngs)
