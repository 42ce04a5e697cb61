r"""The searchable activation slot.

A ``MixedActivation`` holds architecture parameters alpha (their own variable type,
``ArchParam``, which ``nnx.Param`` filters never match, so the weight optimizer
never sees them) and computes

.. math::  y = \sum_{k=1}^{K} w_k \, f_k(x;\theta_k), \qquad w = \mathrm{relax}(\alpha)

per layer (alpha of shape ``[K]``) or per channel (``[C, K]``, the last axis of x is
the channel axis). Parameters theta_k of parametric and learned candidates are weights
(``ActParam``, a kind of ``nnx.Param``: trained with the weights, on the train split), per
layer or per channel by their own granularity, stored as attributes ``p_{candidate}__{name}``.
A ``FixedActivation`` is the discretized slot used for retraining.

Each slot draws its parameters from its own random stream, the model's seed folded with the
slot's name (``slot_key``) and then with the candidate's name, so adding a candidate with a
random start to one slot changes no other slot's or layer's initial weights.
"""

from __future__ import annotations

import contextlib
import contextvars
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from actsearch.errors import UserError
from actsearch.space import activations, fused, relaxations
from actsearch.space import implementation as impl

GRANULARITIES = ("layer", "channel")


_CAPTURE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("actsearch_capture",
                                                                     default=None)


@contextlib.contextmanager
def capturing():
  """While active, every fixed slot called records ``{id(slot): (input, output)}`` in the
  dict it yields (inside a traced function: the traced arrays, to be returned by it)."""
  store: dict = {}
  token = _CAPTURE.set(store)
  try:
    yield store
  finally:
    _CAPTURE.reset(token)


class ArchParam(nnx.Variable):
  """Architecture parameters alpha; updated only by the arch optimizer on the val split."""


class ActParam(nnx.Param):
  """A parameter of a candidate activation (PReLU's slope, PAU's coefficients): a weight,
  which the weight optimizer may treat apart (no weight decay by default, an lr scale)."""


def _crc(name: str) -> int:
  return zlib.crc32(name.encode()) & 0x7FFFFFFF


def slot_key(base: jax.Array, name: str) -> jax.Array:
  """The random stream of slot ``name`` of a model whose seed gives key ``base``."""
  return jax.random.fold_in(base, _crc(name))


def rngs_key(rngs: nnx.Rngs) -> jax.Array:
  """The base key of ``rngs``' params stream (not advanced by drawing from it)."""
  stream = rngs.params if "params" in rngs else rngs.default
  return stream.key[...]


def param_attr(cand: str, pname: str) -> str:
  return f"p_{cand}__{pname}"


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
  """The mixture of a slot: the candidates with a fused rule (``fused.covers``) in one fused
  pass with a custom VJP (``plan`` says which of its passes take the C++ kernel), the others
  (parametric, learned, users') added as the plain sum."""
  covered = [k for k, c in enumerate(candidates) if use_fused and fused.covers(c)]
  if not covered:
    return mix_reference(x, weights, candidates, params)
  chosen = impl.machine_plan() if plan == "auto" else impl.parse(plan)
  if len(covered) == len(candidates):
    return fused.mix(x, weights, tuple(c.name for c in candidates), chosen)
  out = fused.mix(x, weights[..., jnp.asarray(covered)],
                  tuple(candidates[k].name for k in covered), chosen)
  for k, cand in enumerate(candidates):
    if k not in covered:
      out = out + weights[..., k] * cand.fn(x, **params.get(cand.name, {}))
  return out


PARAM_GRANULARITIES = ("layer", "channel")


class Slot(nnx.Module):
  """Shared part of mixed and fixed slots: a name (``block0/act``) and the learnable
  parameters of parametric and learned candidates. ``models.slots`` finds slots by this
  type."""

  slot_name: str | None = None
  slot_order: int | None = None  # a user's model: where its call reaches the slot

  def _init_params(self, candidates, channels: int, granularity: str, key: jax.Array,
                   values: Mapping[str, Mapping[str, Any]] | None = None):
    """One ``ActParam`` per parameter: ``values[cand][param]`` where given (a record's),
    else the candidate's initial value from the slot's stream ``key`` folded with the
    candidate's name."""
    if granularity not in PARAM_GRANULARITIES:
      raise UserError(f"unknown parameter granularity {granularity!r}; known: "
                      f"{', '.join(PARAM_GRANULARITIES)}")
    self.param_granularity = granularity
    per = channels if granularity == "channel" else None
    for cand in candidates:
      if not cand.params:
        continue
      start = cand.initial(jax.random.fold_in(key, _crc(cand.name)), per)
      given = (values or {}).get(cand.name, {})
      unknown = set(given) - set(start)
      if unknown:
        raise UserError(f"slot {self.slot_name}: {cand.name} has no parameter "
                        f"{sorted(unknown)[0]!r} (it has {', '.join(start)})")
      for pname, value in start.items():
        if pname in given:  # a record's value: per layer or per channel, by its shape
          value = jnp.asarray(given[pname], jnp.float32)
          unit = cand.unit_shapes()[pname]
          if value.shape not in (unit, (channels, *unit)):
            raise UserError(f"slot {self.slot_name}: parameter {cand.name}.{pname} has shape "
                            f"{list(value.shape)}, expected {list(unit)} (per layer) or "
                            f"{[channels, *unit]} (per channel)")
        setattr(self, param_attr(cand.name, pname), ActParam(jnp.asarray(value, jnp.float32)))

  def candidate_params(self) -> dict[str, dict[str, jax.Array]]:
    """``{candidate: {param: value}}`` for the parametric candidates of this slot."""
    return {c.name: {p: getattr(self, param_attr(c.name, p))[...] for p in c.params}
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
  ``param_granularity`` (default: ``granularity``) holds candidate parameters per layer or
  per channel; ``key`` is the slot's random stream (default: ``rngs``' seed folded with
  ``name``, ``slot_key``).
  """

  def __init__(self, candidate_names: Sequence[str], *, channels: int,
               granularity: str = "layer", relaxation: str = "softmax",
               temperature: float = 1.0, use_fused: bool = True, alpha_init_std: float = 1e-3,
               rngs: nnx.Rngs, name: str | None = None, normalize: bool = False,
               clamp: float = 0.0, implementation: str = "auto",
               param_granularity: str | None = None, key: jax.Array | None = None):
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
    key = slot_key(rngs_key(rngs), name or "") if key is None else key
    self._init_params(self.candidates, channels, param_granularity or granularity, key)
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
  """A discretized slot: one candidate per layer, or one per channel.

  ``params`` (``{candidate: {param: array}}``, a record's learned values) sets parameters;
  the others start from the candidate's initial values, drawn from ``key`` (the slot's
  stream, ``slot_key``) for candidates with a random start, per layer or per channel by
  ``param_granularity``.
  """

  def __init__(self, choice: str | Sequence[str], *, channels: int,
               params: Mapping[str, Mapping[str, Any]] | None = None,
               name: str | None = None, param_granularity: str = "layer",
               key: jax.Array | None = None):
    self.slot_name = name
    per_channel = not isinstance(choice, str)
    names = list(dict.fromkeys(choice)) if per_channel else [choice]
    self.candidates = activations.resolve(names)
    self.per_channel = per_channel
    for cand_name in params or {}:
      if cand_name not in names:
        raise UserError(f"slot {name}: parameters of {cand_name!r}, which is not a chosen "
                        "candidate")
    key = slot_key(jax.random.key(0), name or "") if key is None else key
    self._init_params(self.candidates, channels, param_granularity, key, params)
    if per_channel:
      if len(choice) != channels:
        raise UserError(f"{len(choice)} channel choices for a slot of {channels} channels")
      self.onehot = nnx.Variable(jax.nn.one_hot([names.index(c) for c in choice], len(names)))

  def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    del key
    if not self.per_channel:
      cand = self.candidates[0]
      y = cand.fn(x, **self.candidate_params().get(cand.name, {}))
    else:
      y = mix_reference(x, self.onehot[...], self.candidates, self.candidate_params())
    store = _CAPTURE.get()
    if store is not None:
      store[id(self)] = (x, y)
    return y


class Choice(nnx.Variable):
  """The candidate a ``SwitchActivation`` computes (its index): state, not a weight."""


class SwitchActivation(Slot):
  r"""A slot that computes one of its candidates, chosen by an integer of the state:
  :math:`y = f_{i}(x; \theta_{i})` with :math:`i` the variable ``index`` (``lax.switch``: only
  the chosen candidate is computed). Networks that differ only in their choices then share one
  graph and one compiled program (the race, ``strategies/race.py``), each computing its own
  activation. Its parameters start as a ``FixedActivation``'s of the same candidate and
  ``key``, so the network with ``index`` at candidate c is the retrain's network of c."""

  def __init__(self, candidate_names: Sequence[str], *, channels: int, name: str | None = None,
               param_granularity: str = "layer", key: jax.Array | None = None):
    self.slot_name = name
    self.candidates = activations.resolve(list(candidate_names))
    key = slot_key(jax.random.key(0), name or "") if key is None else key
    self._init_params(self.candidates, channels, param_granularity, key)
    self.index = Choice(jnp.zeros((), jnp.int32))

  def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    del key
    params = self.candidate_params()
    return switch(self.index[...], self.candidates, x,
                  tuple(params.get(c.name, {}) for c in self.candidates))


def switch(index: jax.Array, candidates: Sequence[activations.Candidate], x: jax.Array,
           params: tuple) -> jax.Array:
  r""":math:`f_{index}(x; \theta_{index})` (``params[k]``: candidate k's ``{param: value}``),
  only that candidate computed, forward and backward.

  Differentiating ``lax.switch`` itself joins the branches' residuals: every branch returns
  the residuals of all (zeros for the others'), so the forward pass writes K candidates'
  intermediate arrays at each step (JAX's partial evaluation of ``cond``). Here the backward
  pass recomputes the chosen candidate from ``x`` instead (its own ``switch`` over the
  candidates' ``jax.vjp``): the residuals are ``x`` and ``params``. The gradients are those
  of ``lax.switch`` (to the last bit for 14 of the 16 default candidates, a few ulps for
  pau and x_asinh_sq); a 16-candidate race 15-17% faster on the CNNs (docs/yardstick.md)."""
  fns = [lambda v, ps, k=k, c=c: c.fn(v, **ps[k]) for k, c in enumerate(candidates)]

  @jax.custom_vjp
  def chosen(i, v, ps):
    return jax.lax.switch(i, fns, v, ps)

  def forward(i, v, ps):
    return chosen(i, v, ps), (i, v, ps)

  def backward(res, g):
    i, v, ps = res
    pulls = [lambda v, ps, g, f=f: jax.vjp(f, v, ps)[1](g) for f in fns]
    return (None, *jax.lax.switch(i, pulls, v, ps, g))

  chosen.defvjp(forward, backward)
  return chosen(index, x, params)
