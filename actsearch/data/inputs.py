r"""What a network's input is made of, on the device: per-channel normalisation of stored pixels,
and the training augmentation of CIFAR (random crop and horizontal flip).

Images stay on the devices as they are stored (uint8: CIFAR-10's 50,000 training images take
150 MB, a quarter of float32) and are normalised in the step,

.. math:: x' = \frac{x / 255 - \mu_c}{\sigma_c},

with :math:`\mu_c, \sigma_c` the mean and standard deviation of channel :math:`c` over the
training split (computed from the data, not a published constant). A training pass augments
first: the image padded by ``crop`` zero pixels on each side and a window of its size cut at a
random offset, then flipped left-right with probability 1/2 (He et al. 2016, section 4.2;
``torchvision``'s ``RandomCrop(32, padding=4)`` and ``RandomHorizontalFlip``). The draws of an
example are a function of its index in the split and the epoch alone,
``fold_in(fold_in(key(seed), epoch), index)``, so that the devices a batch is split over,
the batch it falls in and a resume change nothing. Evaluation normalises only.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

AUGMENTS = ("none", "crop_flip")


@dataclasses.dataclass(frozen=True)
class Inputs:
  """How stored examples become a network's input; the default passes them as float32."""
  scale: float = 1.0                      # stored value -> [0, 1] (1/255 for pixels)
  mean: tuple[float, ...] | None = None   # per channel (last axis), after ``scale``
  std: tuple[float, ...] | None = None
  crop: int = 0                           # training: pad by this many pixels, crop back
  flip: bool = False                      # training: flip left-right with probability 1/2
  seed: int = 0                           # the augmentation's key

  @property
  def augments(self) -> bool:
    return bool(self.crop or self.flip)

  def describe(self) -> dict:
    return {"scale": self.scale, "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std), "crop": self.crop,
            "flip": self.flip}

  def normalise(self, x: jax.Array) -> jax.Array:
    """Stored examples -> network inputs (``x`` on the host or the device): float32 from
    integers, floating-point inputs in their own precision."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
      x = x.astype(jnp.float32)
    if self.scale != 1.0:
      x = x * jnp.asarray(self.scale, x.dtype)
    if self.mean is not None:
      x = (x - jnp.asarray(self.mean, x.dtype)) / jnp.asarray(self.std, x.dtype)
    return x

  def augment(self, x: jax.Array, index: jax.Array, epoch: jax.Array) -> jax.Array:
    """Images ``[B, H, W, C]`` as stored, each cropped and flipped by the draws of its
    ``index`` and ``epoch`` (``[B]`` each)."""
    if not self.augments:
      return x
    base = jax.random.PRNGKey(self.seed)
    keys = jax.vmap(lambda i, e: jax.random.fold_in(jax.random.fold_in(base, e), i))(
        jnp.asarray(index, jnp.uint32), jnp.asarray(epoch, jnp.uint32))
    return jax.vmap(self._one)(keys, x)

  def _one(self, key: jax.Array, image: jax.Array) -> jax.Array:
    k_crop, k_flip = jax.random.split(key)
    if self.crop:
      c = self.crop
      padded = jnp.pad(image, ((c, c), (c, c), (0, 0)))
      dy, dx = jax.random.randint(k_crop, (2,), 0, 2 * c + 1)
      image = jax.lax.dynamic_slice(padded, (dy, dx, 0), image.shape)
    if self.flip:
      image = jnp.where(jax.random.bernoulli(k_flip), image[:, ::-1], image)
    return image

  def __call__(self, x: jax.Array, index: jax.Array | None = None,
               epoch: jax.Array | None = None) -> jax.Array:
    """The network's input: augmented (with ``index`` and ``epoch``: a training pass), then
    normalised."""
    if index is not None and self.augments:
      x = self.augment(x, index, epoch)
    return self.normalise(x)


IDENTITY = Inputs()


def for_images(x_train: np.ndarray, augment: str, seed: int = 0) -> Inputs:
  """The normalisation of uint8 images ``[N, H, W, C]`` by their channels' statistics, and
  ``augment`` (``crop_flip``: pad 4, crop, flip; ``none``)."""
  pixels = x_train.reshape(-1, x_train.shape[-1])
  total, squares = np.zeros(pixels.shape[1]), np.zeros(pixels.shape[1])
  for start in range(0, len(pixels), 2 ** 20):  # in parts: no float copy of every pixel
    part = pixels[start:start + 2 ** 20].astype(np.float64) / 255.0
    total += part.sum(axis=0)
    squares += np.square(part).sum(axis=0)
  mean = total / len(pixels)
  std = np.sqrt(np.maximum(squares / len(pixels) - np.square(mean), 1e-12))
  crop_flip = augment == "crop_flip"
  return Inputs(scale=1.0 / 255.0, mean=tuple(float(v) for v in mean),
                std=tuple(float(v) for v in std), crop=4 if crop_flip else 0, flip=crop_flip,
                seed=seed)
