"""``resnet``: the CIFAR ResNet of He et al. 2016 (section 4.2), ResNet-20/32/44/56.

A 3x3 convolution of ``widths[0]`` channels with batch norm and a slot (``stem/act``), then
three stages of ``n`` basic blocks each, ``n = (model.depth - 2) / 6`` (depth 20: 3 blocks
per stage), of ``model.widths`` = ``[w1, w2, w3]`` channels (the paper's 16, 32, 64),
the first block of the second and third stage striding by 2; global average pooling and a
dense head. A basic block is

    y = act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))

with 3x3 convolutions without bias, batch norm after each (momentum 0.9, epsilon 1e-5, as the
paper's Torch code and its common reimplementations), and two slots: ``stage{s}/block{b}/act1``
and ``.../act2`` (the second after the addition, as in the paper). The shortcut is the
paper's option A: the identity where shapes agree, else the input subsampled by the stride
and its channels zero-padded (no parameters; what the paper's CIFAR networks use).
Convolutions start from He et al. 2015's normal initialisation (fan-out as in the paper's
code: ``variance_scaling(2, "fan_out")``).

Inputs are images ``[height, width, channels]`` (or ``[height, width]``: one channel). Batch
norm's mode is set by the engine (train: the batch's statistics, synchronised over devices;
eval: the running averages).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from actsearch.errors import UserError
from actsearch.models import registry as models
from actsearch.models.taps import Dense

DEPTHS = "6n + 2: 8, 14, 20, 32, 44, 56, 110"
CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def _norm(channels: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
  return nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, rngs=rngs)


def _conv(cin: int, cout: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
  return nnx.Conv(cin, cout, kernel_size=(3, 3), strides=(stride, stride), padding="SAME",
                  use_bias=False, kernel_init=CONV_INIT, rngs=rngs)


class BasicBlock(nnx.Module):
  """Two 3x3 convolutions with batch norm, a slot after the first and after the addition."""

  def __init__(self, cin: int, cout: int, stride: int, name: str,
               slot: models.SlotFactory, *, rngs: nnx.Rngs):
    self.conv1, self.bn1 = _conv(cin, cout, stride, rngs), _norm(cout, rngs)
    self.act1 = slot(f"{name}/act1", cout)
    self.conv2, self.bn2 = _conv(cout, cout, 1, rngs), _norm(cout, rngs)
    self.act2 = slot(f"{name}/act2", cout)
    self.stride, self.pad = stride, cout - cin

  def shortcut(self, x: jax.Array) -> jax.Array:
    """Option A: subsample by the stride, zero-pad the new channels."""
    if self.stride > 1:
      x = x[:, ::self.stride, ::self.stride, :]
    if self.pad:
      x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (self.pad // 2, self.pad - self.pad // 2)))
    return x

  def __call__(self, x: jax.Array, keys: tuple) -> jax.Array:
    h = self.act1(self.bn1(self.conv1(x)), keys[0])
    return self.act2(self.bn2(self.conv2(h)) + self.shortcut(x), keys[1])


class ResNet(nnx.Module):

  def __init__(self, in_channels: int, blocks: int, widths: Sequence[int], num_outputs: int,
               slot: models.SlotFactory, *, rngs: nnx.Rngs):
    self.stem, self.stem_bn = _conv(in_channels, widths[0], 1, rngs), _norm(widths[0], rngs)
    self.stem_act = slot("stem/act", widths[0])
    layers, cin = [], widths[0]
    for s, cout in enumerate(widths):
      for b in range(blocks):
        stride = 2 if s > 0 and b == 0 else 1
        layers.append(BasicBlock(cin, cout, stride, f"stage{s + 1}/block{b + 1}", slot,
                                 rngs=rngs))
        cin = cout
    self.blocks = nnx.List(layers)
    self.head = Dense(cin, num_outputs, rngs=rngs)

  def __call__(self, x: jax.Array, key: jax.Array | None = None, *,
               train: bool = True) -> jax.Array:
    del train  # batch norm's mode is its attribute, set by the engine
    keys = iter(range(1 + 2 * len(self.blocks)))

    def sub():
      i = next(keys)
      return None if key is None else jax.random.fold_in(key, i)
    if x.ndim == 3:
      x = x[..., None]
    x = self.stem_act(self.stem_bn(self.stem(x)), sub())
    for block in self.blocks:
      x = block(x, (sub(), sub()))
    return self.head(jnp.mean(x, axis=(1, 2)))


@models.register("resnet")
def build(cfg, input_shape, num_outputs, slot, rngs):
  if len(input_shape) not in (2, 3):
    raise UserError(f"resnet needs images of shape [height, width] or [height, width, "
                    f"channels], got {list(input_shape)}")
  depth = cfg.get("depth", 20)
  if not isinstance(depth, int) or isinstance(depth, bool) or depth < 8 or (depth - 2) % 6:
    raise UserError(f"model.depth must be {DEPTHS}, got {depth!r}")
  widths = models.widths_of(cfg)
  if len(widths) != 3:
    raise UserError(f"model.widths of a resnet gives its three stages' channels ([16, 32, 64] "
                    f"in the paper), got {widths}")
  in_ch = 1 if len(input_shape) == 2 else input_shape[2]
  return ResNet(in_ch, (depth - 2) // 6, widths, num_outputs, slot, rngs=rngs)
