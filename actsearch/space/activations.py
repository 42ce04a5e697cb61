r"""The candidate registry: stable name -> candidate activation.

A candidate is a pure function ``fn(x, **params)`` with a formula for people and,
for parametric candidates, the initial values of its learnable parameters (which
are weights, trained on the train split like any other weight).

Every built-in candidate is listed in ``BUILTINS`` with its formula; ``register``
adds a user's own, after which it can be named in ``search.candidates`` exactly like
a built-in and joins every property test of the suite.

Example::

  >>> import jax.numpy as jnp
  >>> from actsearch import activations
  >>> activations.get("relu").fn(jnp.array([-1.0, 2.0]))
  Array([0., 2.], dtype=float32)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from actsearch.errors import UserError


@dataclasses.dataclass(frozen=True, eq=False)
class Candidate:
  """One candidate activation.

  Attributes:
    name: stable registry key, used in configs and in ``architecture.json``.
    fn: ``fn(x, **params) -> y``, elementwise, shape preserving.
    formula: the formula in plain text, shown by ``actsearch candidates``.
    params: learnable parameters and their initial values (empty if none).
  """

  name: str
  fn: Callable[..., jax.Array]
  formula: str
  params: Mapping[str, float] = dataclasses.field(default_factory=dict)

  @property
  def parametric(self) -> bool:
    return bool(self.params)

  def __call__(self, x: jax.Array, **params: Any) -> jax.Array:
    return self.fn(x, **params)


class UnknownCandidateError(UserError):
  """A candidate name that is not registered."""


_REGISTRY: dict[str, Candidate] = {}


def register(name: str, fn: Callable[..., jax.Array], formula: str,
             params: Mapping[str, float] | None = None, *,
             overwrite: bool = False) -> Candidate:
  """Adds a candidate to the registry and returns it.

  Args:
    name: the key used in configs; lowercase letters, digits and ``_``.
    fn: ``fn(x, **params)``, elementwise and differentiable almost everywhere.
    formula: plain-text formula, e.g. ``"x * sigmoid(beta * x)"``.
    params: initial values of learnable parameters, e.g. ``{"beta": 1.0}``.
    overwrite: replace an existing candidate of the same name.
  """
  if not name or not all(c.isalnum() or c == "_" for c in name) or name != name.lower():
    raise UserError(f"candidate name {name!r} must be lowercase letters, digits and '_'")
  if name in _REGISTRY and not overwrite:
    raise UserError(f"candidate {name!r} is already registered (pass overwrite=True)")
  cand = Candidate(name, fn, formula, dict(params or {}))
  _REGISTRY[name] = cand
  return cand


def unregister(name: str) -> None:
  """Removes a candidate (used by tests that register their own)."""
  _REGISTRY.pop(name, None)


def get(name: str) -> Candidate:
  """The candidate called ``name``; an unknown name lists the known ones."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise UnknownCandidateError(
        f"unknown candidate activation {name!r}; known: {', '.join(names())}") from None


def resolve(candidate_names: Sequence[str]) -> tuple[Candidate, ...]:
  """Looks up a candidate list, rejecting unknown names, duplicates and empty lists."""
  if isinstance(candidate_names, str) or not candidate_names:
    raise UserError("search.candidates must be a non-empty list of candidate names")
  if len(set(candidate_names)) != len(candidate_names):
    raise UserError(f"search.candidates has duplicates: {list(candidate_names)}")
  return tuple(get(n) for n in candidate_names)


def names() -> list[str]:
  return sorted(_REGISTRY)


def all_candidates() -> list[Candidate]:
  return [_REGISTRY[n] for n in names()]


# ---------------------------------------------------------------------------
# Built-ins. Formulas follow the papers (and jax.nn where it implements them).

_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu_tanh(x):
  return 0.5 * x * (1.0 + jnp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


def _prelu(x, slope):
  return jnp.where(x >= 0, x, slope * x)


def _swish_beta(x, beta):
  return x * jax.nn.sigmoid(beta * x)


BUILTINS: tuple[tuple[str, Callable[..., jax.Array], str, dict[str, float]], ...] = (
    ("identity", lambda x: x, "x", {}),
    ("relu", jax.nn.relu, "max(x, 0)", {}),
    ("leaky_relu", lambda x: jnp.where(x >= 0, x, 0.01 * x), "x if x >= 0 else 0.01 x", {}),
    ("elu", jax.nn.elu, "x if x > 0 else exp(x) - 1", {}),
    ("selu", jax.nn.selu,
     f"{_SELU_SCALE:.4f} * (x if x > 0 else {_SELU_ALPHA:.4f} (exp(x) - 1))", {}),
    ("celu", jax.nn.celu, "max(x, 0) + min(0, exp(x) - 1)  (alpha = 1)", {}),
    ("gelu", _gelu_tanh, "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))", {}),
    ("gelu_exact", lambda x: jax.nn.gelu(x, approximate=False),
     "x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))", {}),
    ("silu", jax.nn.silu, "x sigmoid(x)", {}),
    ("mish", lambda x: x * jnp.tanh(jax.nn.softplus(x)), "x tanh(softplus(x))", {}),
    ("softplus", jax.nn.softplus, "log(1 + exp(x))", {}),
    ("tanh", jnp.tanh, "tanh(x)", {}),
    ("sigmoid", jax.nn.sigmoid, "1 / (1 + exp(-x))", {}),
    ("hard_tanh", lambda x: jnp.clip(x, -1.0, 1.0), "clip(x, -1, 1)", {}),
    ("hard_sigmoid", lambda x: jnp.clip(x / 6.0 + 0.5, 0.0, 1.0), "relu6(x + 3) / 6", {}),
    ("hard_swish", lambda x: x * jnp.clip(x / 6.0 + 0.5, 0.0, 1.0), "x relu6(x + 3) / 6", {}),
    ("relu6", lambda x: jnp.clip(x, 0.0, 6.0), "min(max(x, 0), 6)", {}),
    ("softsign", lambda x: x / (1.0 + jnp.abs(x)), "x / (1 + |x|)", {}),
    ("log_sigmoid", jax.nn.log_sigmoid, "-softplus(-x) = -log(1 + exp(-x))", {}),
    ("sin", jnp.sin, "sin(x)", {}),
    ("cos", jnp.cos, "cos(x)", {}),
    ("gaussian", lambda x: jnp.exp(-x * x), "exp(-x^2)", {}),
    ("square", lambda x: x * x, "x^2", {}),
    ("abs", jnp.abs, "|x|", {}),
    # Parametric candidates: their parameters are weights of the slot.
    ("prelu", _prelu, "x if x >= 0 else a x  (a learned, init 0.25)", {"slope": 0.25}),
    ("swish_beta", _swish_beta, "x sigmoid(beta x)  (beta learned, init 1)", {"beta": 1.0}),
)

for _name, _fn, _formula, _params in BUILTINS:
  register(_name, _fn, _formula, _params)
