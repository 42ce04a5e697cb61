r"""The searchable activation slot.

A ``MixedActivation`` holds architecture parameters alpha (their own variable type,
``ArchParam``, which ``nnx.Param`` filters never match, so the weight optimizer
never sees them) and computes

.. math::  y = \sum_{k=1}^{K} w_k \, f_k(x;\theta_k), \qquad w = \mathrm{relax}(\alpha)

per layer (alpha of shape ``[K]``) or per channel (``[C, K]``, the last axis of x is
the channel axis). Parameters theta_k of parametric candidates are ordinary weights
(``nnx.Param``). A ``FixedActivation`` is the discretized slot used for retraining.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from actsearch.errors import UserError
from actsearch.space import activations, fused, relaxations
from actsearch.space import implementation as impl

GRANULARITIES = ("layer", "channel")


class ArchParam(nnx.Variable):
  """Architecture parameters alpha; updated only by the arch optimizer on the val split."""


def mix_reference(x: jax.Array, weights: jax.Array, candidates: Sequence[activations.Candidate],
                  params: Mapping[str, Mapping[str, jax.Array]]) -> jax.Array:
  r"""The plain mixture :math:`\sum_k w_{\ldots k} f_k(x)`; weights ``[K]`` or ``[C, K]``."""
  out = jnp.zeros_like(x)
  for k, cand in enumerate(candidates):
    out = out + weights[..., k] * cand.fn(x, **params.get(cand.name, {}))
  return out


def mix(x: jax.Array, weights: jax.Array, candidates: Sequence[activations.Candidate],
        params: Mapping[str, Mapping[str, jax.Array]], use_fused: bool = True,
        plan: str = "kernel") -> jax.Array:
  """The mixture of a slot: one fused pass with a custom VJP where every candidate has a
  fused rule (``fused.RULES``; ``plan`` says which of its passes take the C++ kernel),
  otherwise the plain sum."""
  if use_fused and fused.supports(candidates):
    chosen = impl.machine_plan() if plan == "auto" else impl.parse(plan)
    return fused.mix(x, weights, tuple(c.name for c in candidates), chosen)
  return mix_reference(x, weights, candidates, params)


def _param_attr(cand: str, pname: str) -> str:
  return f"p_{cand}__{pname}"


class Slot(nnx.Module):
  """Shared part of mixed and fixed slots: a name (``block0/act``) and the learnable
  parameters of parametric candidates. ``models.slots`` finds slots by this type."""

  slot_name: str | None = None

  def _init_params(self, candidates, channels, granularity):
    shape = (channels,) if granularity == "channel" else ()
    for cand in candidates:
      for pname, init in cand.params.items():
        setattr(self, _param_attr(cand.name, pname), nnx.Param(jnp.full(shape, init, jnp.float32)))

  def candidate_params(self) -> dict[str, dict[str, jax.Array]]:
    """``{candidate: {param: value}}`` for the parametric candidates of this slot."""
    return {c.name: {p: getattr(self, _param_attr(c.name, p))[...] for p in c.params}
            for c in self.candidates if c.params}


def standard_moments(candidates: Sequence[activations.Candidate], nodes: int = 80):
  r"""Mean :math:`\mu_k = E[f_k(z)]` and standard deviation :math:`\sigma_k =
  \sqrt{E[(f_k(z) - \mu_k)^2]}` of each candidate (default parameters) under a standard normal
  input :math:`z \sim N(0, 1)`, by Gauss-Hermite quadrature with ``nodes`` points."""
  import numpy as np
  z, w = np.polynomial.hermite_e.hermegauss(nodes)
  w = w / w.sum()
  mus, sigmas = [], []
  for cand in candidates:
    f = np.asarray(cand.fn(jnp.asarray(z, jnp.float32), **cand.params), np.float64)
    mu = float(np.sum(w * f))
    mus.append(mu)
    sigmas.append(max(float(np.sqrt(np.sum(w * (f - mu) ** 2))), 1e-6))
  return np.asarray(mus, np.float32), np.asarray(sigmas, np.float32)


class MixedActivation(Slot):
  r"""A searchable slot: a relaxed mixture of K candidate activations.

  Stabilisers (off by default):

  * ``normalize`` (candidate normalisation): each candidate enters as
    :math:`(f_k(x) - \mu_k) / \sigma_k`, zero mean and unit second moment under a standard
    normal input (``standard_moments``, computed once), so that no candidate wins alpha by its
    offset or scale alone; folded into the weights, :math:`y = \sum_k (w_k / \sigma_k) f_k(x)
    - \sum_k w_k \mu_k / \sigma_k`, which keeps the fused pass.
  * ``clamp`` (output clamping, as GRAFS, Strack et al. 2024): :math:`y \to
    \mathrm{clip}(y, -c, c)`, so that an unbounded candidate cannot blow up the supernet.

  ``implementation`` (``auto``: the machine's plan, or a plan of ``space/implementation.py``)
  says which passes of the fused mixture take the C++ kernel; the slot keeps it resolved.
  """

  def __init__(self, candidate_names: Sequence[str], *, channels: int,
               granularity: str = "layer", relaxation: str = "softmax",
               temperature: float = 1.0, use_fused: bool = True, alpha_init_std: float = 1e-3,
               rngs: nnx.Rngs, name: str | None = None, normalize: bool = False,
               clamp: float = 0.0, implementation: str = "auto"):
    self.slot_name = name
    self.normalize = bool(normalize)
    self.clamp = float(clamp)
    if granularity not in GRANULARITIES:
      raise UserError(f"unknown granularity {granularity!r}; known: {', '.join(GRANULARITIES)}")
    self.candidates = activations.resolve(candidate_names)
    self.relaxation = relaxation
    self.relax_fn = relaxations.get(relaxation)
    # A variable, not a constant: temperature annealing changes it during the search.
    self.tau = nnx.Variable(jnp.asarray(temperature, jnp.float32))
    self.granularity = granularity
    self.use_fused = use_fused
    self.implementation = impl.resolve(implementation)
    k = len(self.candidates)
    shape = (channels, k) if granularity == "channel" else (k,)
    # DARTS initialises alpha with 1e-3 * N(0, 1): near-uniform weights, symmetry broken.
    self.alpha = ArchParam(alpha_init_std * jax.random.normal(rngs.params(), shape))
    self._init_params(self.candidates, channels, granularity)
    if self.normalize:
      mu, sigma = standard_moments(self.candidates)
      self.moments = nnx.Variable(jnp.stack([jnp.asarray(mu), jnp.asarray(sigma)]))

  def weights(self, key: jax.Array | None = None) -> jax.Array:
    return self.relax_fn(self.alpha[...], key, self.tau[...])

  def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    w = self.weights(key)
    if not self.normalize:
      y = mix(x, w, self.candidates, self.candidate_params(), self.use_fused,
              self.implementation)
    else:
      mu, sigma = self.moments[...]
      y = mix(x, w / sigma, self.candidates, self.candidate_params(), self.use_fused,
              self.implementation)
      y = y - jnp.sum(w * mu / sigma, axis=-1)
    return jnp.clip(y, -self.clamp, self.clamp) if self.clamp > 0 else y


class FixedActivation(Slot):
  """A discretized slot: one candidate per layer, or one per channel."""

  def __init__(self, choice: str | Sequence[str], *, channels: int,
               params: Mapping[str, Mapping[str, float]] | None = None,
               name: str | None = None):
    self.slot_name = name
    per_channel = not isinstance(choice, str)
    names = list(dict.fromkeys(choice)) if per_channel else [choice]
    self.candidates = activations.resolve(names)
    self.per_channel = per_channel
    granularity = "channel" if per_channel else "layer"
    self._init_params(self.candidates, channels, granularity)
    for cand_name, values in (params or {}).items():
      for pname, value in values.items():
        attr = _param_attr(cand_name, pname)
        if not hasattr(self, attr):
          raise UserError(f"parameter {cand_name}.{pname} does not belong to a chosen candidate")
        var = getattr(self, attr)
        var[...] = jnp.broadcast_to(jnp.asarray(value, jnp.float32), var[...].shape)
    if per_channel:
      if len(choice) != channels:
        raise UserError(f"{len(choice)} channel choices for a slot of {channels} channels")
      self.onehot = nnx.Variable(jax.nn.one_hot([names.index(c) for c in choice], len(names)))

  def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    del key
    if not self.per_channel:
      cand = self.candidates[0]
      return cand.fn(x, **self.candidate_params().get(cand.name, {}))
    return mix_reference(x, self.onehot[...], self.candidates, self.candidate_params())
