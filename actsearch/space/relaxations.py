r"""Relaxations: architecture parameters alpha -> mixture weights over K candidates.

All act on the last axis of ``alpha`` (shape ``[K]`` per layer or ``[C, K]`` per
channel) and are pure functions. ``key`` is the randomness of the stochastic ones
during search; without a key they return their deterministic (expected) weights,
which is what discretize and evaluation use.

* ``softmax`` (DARTS, Liu et al. 2019):
  :math:`w_k = \exp(\alpha_k / T) / \sum_j \exp(\alpha_j / T)`.
* ``gumbel`` (GDAS, Dong & Yang 2019; soft Gumbel-softmax):
  :math:`w = \mathrm{softmax}((\alpha + g) / T)`, :math:`g_k = -\log(-\log u_k)`,
  :math:`u_k \sim U(0, 1)`; without a key, :math:`\mathrm{softmax}(\alpha / T)`.
* ``sigmoid`` (FairDARTS, Chu et al. 2020): :math:`w_k = \sigma(\alpha_k / T)`, candidates
  do not compete for a shared unit of weight.
* ``dirichlet`` (DrNAS, Chen et al. 2021): :math:`w \sim \mathrm{Dir}(\beta)` with
  concentration :math:`\beta = \mathrm{elu}(\alpha) + 1` and pathwise (implicit
  reparameterisation) gradients; without a key, the mean :math:`\beta / \sum_j \beta_j`.
* ``draw`` (random activation, the ``random_activation`` strategy): a one-hot draw, uniform
  over the candidates not removed (:math:`\alpha_k > ` ``REMOVED``), one per call (the whole
  batch shares it); alpha gets no gradient. Without a key, the uniform weights over those
  candidates: a slot pinned to one candidate is that candidate exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from actsearch.errors import UserError


def softmax(alpha: jax.Array, key: jax.Array | None = None, temperature: float = 1.0) -> jax.Array:
  del key
  return jax.nn.softmax(alpha / temperature, axis=-1)


def gumbel(alpha: jax.Array, key: jax.Array | None = None, temperature: float = 1.0) -> jax.Array:
  if key is None:
    return jax.nn.softmax(alpha / temperature, axis=-1)
  g = jax.random.gumbel(key, alpha.shape, alpha.dtype)
  return jax.nn.softmax((alpha + g) / temperature, axis=-1)


def sigmoid(alpha: jax.Array, key: jax.Array | None = None, temperature: float = 1.0) -> jax.Array:
  del key
  return jax.nn.sigmoid(alpha / temperature)


def dirichlet(alpha: jax.Array, key: jax.Array | None = None,
              temperature: float = 1.0) -> jax.Array:
  del temperature
  concentration = jax.nn.elu(alpha) + 1.0
  if key is None:
    return concentration / jnp.sum(concentration, axis=-1, keepdims=True)
  return jax.random.dirichlet(key, concentration, dtype=alpha.dtype)


REMOVED = -5e3  # alpha below this: a candidate removed (discretize pins to -1e4)


def draw(alpha: jax.Array, key: jax.Array | None = None, temperature: float = 1.0) -> jax.Array:
  del temperature
  alive = jax.lax.stop_gradient(alpha) > REMOVED
  if key is None:
    w = alive.astype(alpha.dtype)
    return w / jnp.sum(w, axis=-1, keepdims=True)
  pick = jax.random.categorical(key, jnp.where(alive, 0.0, -jnp.inf), axis=-1)
  return jax.nn.one_hot(pick, alpha.shape[-1], dtype=alpha.dtype)


RELAXATIONS: dict[str, Callable[..., jax.Array]] = {
    "softmax": softmax,
    "gumbel": gumbel,
    "sigmoid": sigmoid,
    "dirichlet": dirichlet,
    "draw": draw,
}

STOCHASTIC = frozenset({"gumbel", "dirichlet", "draw"})


def get(name: str) -> Callable[..., jax.Array]:
  try:
    return RELAXATIONS[name]
  except KeyError:
    raise UserError(f"unknown relaxation {name!r}; known: {', '.join(RELAXATIONS)}") from None


def entropy(weights: jax.Array) -> jax.Array:
  r"""Entropy of the normalised weights, averaged over leading axes:
  :math:`H = -\sum_k p_k \log p_k` with :math:`p = w / \sum_j w_j`."""
  p = weights / jnp.sum(weights, axis=-1, keepdims=True)
  return jnp.mean(-jnp.sum(p * jnp.log(jnp.clip(p, 1e-12)), axis=-1))
