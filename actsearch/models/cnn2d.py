"""``cnn2d``: a plain convolutional net for small images (CPU-sized).

For each width in ``model.widths``: a 3x3 convolution ('SAME' padding), a slot, and 2x2 average
pooling while the image is larger than 1x1; then a dense hidden layer of ``model.dense``
units (0: none) with its own slot, and a dense head. Inputs ``[height, width]`` or
``[height, width, channels]`` (scikit-learn's digits as images: ``data.images = true``, 8x8x1).
The slots are ``block{i}/act``, the dense layer's last.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from actsearch.errors import UserError
from actsearch.models import registry as models
from actsearch.models.taps import Dense


class CNN2D(nnx.Module):

  def __init__(self, image: Sequence[int], in_channels: int, widths: Sequence[int],
               dense: int, num_outputs: int, slot: models.SlotFactory, *, rngs: nnx.Rngs):
    chans = [in_channels, *widths]
    self.convs = nnx.List([nnx.Conv(a, b, kernel_size=(3, 3), padding="SAME", rngs=rngs)
                           for a, b in zip(chans[:-1], chans[1:])])
    names = [models.slot_name(i) for i in range(len(widths) + (1 if dense else 0))]
    self.acts = nnx.List([slot(n, w) for n, w in zip(names, [*widths, dense])])
    h, w = image
    pools = []
    for _ in widths:  # pool while the image is larger than 1x1
      pool = h > 1 and w > 1
      pools.append(pool)
      h, w = (h // 2, w // 2) if pool else (h, w)
    self.pools = tuple(pools)
    features = h * w * chans[-1]
    self.hidden = Dense(features, dense, rngs=rngs) if dense else None
    self.head = Dense(dense or features, num_outputs, rngs=rngs)

  def __call__(self, x: jax.Array, key: jax.Array | None = None, *,
               train: bool = True) -> jax.Array:
    del train  # no layer here behaves differently in training
    if x.ndim == 3:
      x = x[..., None]  # [batch, height, width] -> one channel
    for i, conv in enumerate(self.convs):
      x = self.acts[i](conv(x), None if key is None else jax.random.fold_in(key, i))
      if self.pools[i]:
        x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    if self.hidden is not None:
      i = len(self.convs)
      x = self.acts[i](self.hidden(x), None if key is None else jax.random.fold_in(key, i))
    return self.head(x)


@models.register("cnn2d")
def build(cfg, input_shape, num_outputs, slot, rngs):
  if len(input_shape) not in (2, 3):
    raise UserError(f"cnn2d needs inputs of shape [height, width] or [height, width, "
                    f"channels], got {list(input_shape)}")
  in_ch = 1 if len(input_shape) == 2 else input_shape[2]
  dense = int(cfg.get("dense", 0) or 0)
  if dense < 0:
    raise UserError(f"model.dense must be >= 0, got {dense}")
  return CNN2D(input_shape[:2], in_ch, models.widths_of(cfg), dense, num_outputs, slot,
               rngs=rngs)
