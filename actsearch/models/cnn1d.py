"""``cnn1d``: the MNIST-1D convolutional baseline (Greydanus 2020).

Three 1-D convolutions (kernel 5, 3, 3; stride 2; padding 1; 25 channels by default), each
followed by a slot, then a dense head on the flattened features.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from actsearch.errors import UserError
from actsearch.models import registry as models
from actsearch.models.taps import Dense


class CNN1D(nnx.Module):

  def __init__(self, length: int, in_channels: int, widths: Sequence[int], num_outputs: int,
               slot: models.SlotFactory, *, kernel_sizes: Sequence[int] = (5, 3, 3),
               rngs: nnx.Rngs):
    if len(kernel_sizes) != len(widths):
      raise UserError(f"model.kernel_sizes has {len(kernel_sizes)} entries for "
                      f"{len(widths)} widths")
    chans = [in_channels, *widths]
    self.convs = nnx.List([
        nnx.Conv(a, b, kernel_size=(k,), strides=(2,), padding=[(1, 1)], rngs=rngs)
        for a, b, k in zip(chans[:-1], chans[1:], kernel_sizes)])
    self.acts = nnx.List([slot(models.slot_name(i), w) for i, w in enumerate(widths)])
    for k in kernel_sizes:
      length = (length + 2 - k) // 2 + 1
    if length < 1:
      raise UserError("the input is too short for the convolutions of model.widths")
    self.head = Dense(length * chans[-1], num_outputs, rngs=rngs)

  def __call__(self, x: jax.Array, key: jax.Array | None = None, *,
               train: bool = True) -> jax.Array:
    del train  # no layer here behaves differently in training
    if x.ndim == 2:
      x = x[..., None]  # [batch, length] -> [batch, length, 1 channel]
    for i, (conv, act) in enumerate(zip(self.convs, self.acts)):
      x = act(conv(x), None if key is None else jax.random.fold_in(key, i))
    return self.head(x.reshape(x.shape[0], -1))


@models.register("cnn1d")
def build(cfg, input_shape, num_outputs, slot, rngs):
  if len(input_shape) not in (1, 2):
    raise UserError(f"cnn1d needs inputs of shape [length] or [length, channels], "
                    f"got {list(input_shape)}")
  in_ch = 1 if len(input_shape) == 1 else input_shape[1]
  kernels = tuple(cfg.get("kernel_sizes", (5, 3, 3)))
  return CNN1D(input_shape[0], in_ch, models.widths_of(cfg), num_outputs, slot,
               kernel_sizes=kernels, rngs=rngs)
