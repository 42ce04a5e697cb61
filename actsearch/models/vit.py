"""``vit``: a Vision Transformer (Dosovitskiy et al. 2021) for small images, ViT-Ti sized by
default (Touvron et al. 2021: width 192, 12 blocks, 3 heads, MLP 768).

The image is cut into ``model.patch`` x ``model.patch`` patches, each embedded linearly (a
convolution with the patch as kernel and stride); a learned class token is prepended and a
learned position embedding added; then ``model.depth`` pre-norm blocks

    x = x + dropout(attention(layer_norm(x)))
    x = x + dropout(dense2(dropout(act(dense1(layer_norm(x))))))

with ``model.heads`` heads over ``model.dim`` features and an MLP of ``model.mlp_dim`` hidden
units, whose activation (GELU in the paper) is the block's slot ``block{i}/mlp/act``; a final
layer norm and a dense head on the class token. ``model.dropout`` (0: none) is used after the
attention, inside the MLP and after it, and on the attention weights; Flax's own layers
(``nnx.MultiHeadAttention``, ``nnx.Dropout``, ``nnx.LayerNorm``), their train and eval modes set
by the engine. Inputs are images ``[height, width, channels]`` (or ``[height, width]``)
whose sides the patch divides.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from actsearch.errors import UserError
from actsearch.models import registry as models
from actsearch.models.taps import Dense

TINY = {"patch": 4, "dim": 192, "depth": 12, "heads": 3, "mlp_dim": 768, "dropout": 0.0}


class Block(nnx.Module):
  """A pre-norm transformer block; its MLP's activation is a slot."""

  def __init__(self, name: str, dim: int, heads: int, mlp_dim: int, dropout: float,
               slot: models.SlotFactory, *, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=dim, qkv_features=dim,
                                       dropout_rate=dropout, decode=False, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
    self.dense1 = Dense(dim, mlp_dim, rngs=rngs)
    self.act = slot(f"{name}/mlp/act", mlp_dim)
    self.dense2 = Dense(mlp_dim, dim, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
    x = x + self.dropout(self.attn(self.norm1(x)))
    h = self.act(self.dense1(self.norm2(x)).reshape(-1, self.dense1.out_features), key)
    h = self.dropout(h.reshape(*x.shape[:-1], -1))
    return x + self.dropout(self.dense2(h.reshape(-1, h.shape[-1])).reshape(x.shape))


class ViT(nnx.Module):

  def __init__(self, image: tuple[int, int], in_channels: int, patch: int, dim: int,
               depth: int, heads: int, mlp_dim: int, dropout: float, num_outputs: int,
               slot: models.SlotFactory, *, rngs: nnx.Rngs):
    self.embed = nnx.Conv(in_channels, dim, kernel_size=(patch, patch),
                          strides=(patch, patch), padding="VALID", rngs=rngs)
    tokens = (image[0] // patch) * (image[1] // patch) + 1
    init = nnx.initializers.normal(0.02)
    self.cls = nnx.Param(init(rngs.params(), (1, 1, dim)))
    self.pos = nnx.Param(init(rngs.params(), (1, tokens, dim)))
    self.blocks = nnx.List([Block(f"block{i}", dim, heads, mlp_dim, dropout, slot,
                                  rngs=rngs) for i in range(depth)])
    self.norm = nnx.LayerNorm(dim, rngs=rngs)
    self.head = Dense(dim, num_outputs, rngs=rngs)

  def __call__(self, x: jax.Array, key: jax.Array | None = None, *,
               train: bool = True) -> jax.Array:
    del train  # dropout's mode is its attribute, set by the engine
    if x.ndim == 3:
      x = x[..., None]
    x = self.embed(x)
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    cls = jnp.broadcast_to(self.cls[...], (x.shape[0], 1, x.shape[-1]))
    x = jnp.concatenate([cls, x], axis=1) + self.pos[...]
    for i, block in enumerate(self.blocks):
      x = block(x, None if key is None else jax.random.fold_in(key, i))
    return self.head(self.norm(x[:, 0]))


@models.register("vit")
def build(cfg, input_shape, num_outputs, slot, rngs):
  if len(input_shape) not in (2, 3):
    raise UserError(f"vit needs images of shape [height, width] or [height, width, "
                    f"channels], got {list(input_shape)}")
  size = {k: cfg.get(k, v) for k, v in TINY.items()}
  for k in ("patch", "dim", "depth", "heads", "mlp_dim"):
    if not isinstance(size[k], int) or isinstance(size[k], bool) or size[k] < 1:
      raise UserError(f"model.{k} must be a positive integer, got {size[k]!r}")
  if not 0.0 <= float(size["dropout"]) < 1.0:
    raise UserError(f"model.dropout must lie in [0, 1), got {size['dropout']!r}")
  if size["dim"] % size["heads"]:
    raise UserError(f"model.dim {size['dim']} is not divisible by model.heads {size['heads']}")
  h, w = input_shape[:2]
  if h % size["patch"] or w % size["patch"]:
    raise UserError(f"model.patch {size['patch']} does not divide the {h}x{w} images")
  in_ch = 1 if len(input_shape) == 2 else input_shape[2]
  return ViT((h, w), in_ch, size["patch"], size["dim"], size["depth"], size["heads"],
             size["mlp_dim"], float(size["dropout"]), num_outputs, slot, rngs=rngs)
