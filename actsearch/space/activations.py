r"""The candidate registry: stable name -> candidate activation.

A candidate is a pure elementwise function ``fn(x, **params)`` with a formula for people and,
for parametric and learned candidates, a dict of named parameter arrays with their initial
values (``init``). Parameters are weights of the slot, trained on the train split with the
network's other weights (never with alpha).

Parameter shapes: each parameter has a *unit shape* (``()`` for PReLU's slope, ``(6,)`` for
PAU's numerator). A slot holds it per layer (that shape) or per channel (``(C, *unit)``, the
channel axis being the last axis of x). ``fn`` is written for both: it reads a parameter's
entries from its trailing axes (``p[..., j]``) and broadcasts ``x[..., None]`` against vector
parameters, so ``(C,)`` lines up with the channel axis of ``x``.

The built-ins live in ``space/candidates`` (``fixed``, ``parametric``, ``learned``), each with
its formula and source; importing ``actsearch.space`` registers them. ``register`` adds a
user's own, after which it can be named in ``search.candidates`` exactly like a built-in,
is recorded in ``architecture.json`` with the code that registered it, and joins every
property test of the suite. Names of groups (``GROUPS``: ``all``, ``fixed``, ``parametric``,
``learned``, ``default``) expand to their members in ``search.candidates``. Families with a
size (``maxout`` pieces, ``apl`` hinges, ``nn_act`` width) are named with it: ``maxout_k4``,
``apl_s3``, ``nn_act_w16``.

Example::

  >>> import jax.numpy as jnp
  >>> from actsearch import activations
  >>> activations.get("relu").fn(jnp.array([-1.0, 2.0]))
  Array([0., 2.], dtype=float32)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from actsearch import registry
from actsearch.errors import UserError, comes_from

KINDS = ("fixed", "parametric", "learned")

Params = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True, eq=False)
class Candidate:
  """One candidate activation.

  Attributes:
    name: stable registry key, used in configs and in ``architecture.json``.
    fn: ``fn(x, **params) -> y``, elementwise, shape preserving.
    formula: the formula in plain text, shown by ``actsearch candidates``.
    params: initial values of the learnable parameters, by name, in their unit shapes (empty
      if none); for a candidate with a random ``init``, its values under ``PRNGKey(0)``.
    init: ``init(key) -> params`` for candidates whose parameters start random (one draw per
      unit); None: every unit starts from ``params``.
    kind: ``fixed``, ``parametric`` (a few parameters of a formula) or ``learned`` (a shape
      learned from a general family: rational functions, pieces, a small network).
    source: where the formula comes from (paper), shown by ``actsearch candidates``.
    code: None for a built-in; else the user code that registered it (a file or a module).
    family: for counting distinct families: the parametric family a fixed candidate is a
      member of (``silu`` is ``swish_beta`` at beta = 1), else None.
  """

  name: str
  fn: Callable[..., jax.Array]
  formula: str
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  init: Callable[[jax.Array], Mapping[str, Any]] | None = None
  kind: str = "fixed"
  source: str = ""
  code: str | None = None
  family: str | None = None

  @property
  def parametric(self) -> bool:
    return bool(self.params)

  def unit_shapes(self) -> dict[str, tuple[int, ...]]:
    return {p: tuple(np.shape(v)) for p, v in self.params.items()}

  def initial(self, key: jax.Array, channels: int | None = None) -> Params:
    """The slot's parameters at the start: per layer (``channels`` None), or per channel with
    a leading axis of ``channels`` (a random ``init`` draws each channel from its own key)."""
    if self.init is None:
      one = {p: jnp.asarray(v, jnp.float32) for p, v in self.params.items()}
      if channels is None:
        return one
      return {p: jnp.broadcast_to(v, (channels, *v.shape)) + jnp.zeros((), jnp.float32)
              for p, v in one.items()}
    draw = lambda k: {p: jnp.asarray(v, jnp.float32) for p, v in self.init(k).items()}
    if channels is None:
      return draw(key)
    return jax.vmap(draw)(jax.random.split(key, channels))

  def __call__(self, x: jax.Array, **params: Any) -> jax.Array:
    return self.fn(x, **(params or self.params))


class _Drawn(Mapping):
  """The parameters ``init(PRNGKey(0))`` of a candidate with a random start, drawn on first
  use: registering a candidate computes nothing (importing actsearch starts no JAX backend)."""

  def __init__(self, name: str, init: Callable[[jax.Array], Mapping[str, Any]]):
    self._name, self._init, self._values = name, init, None

  def _get(self) -> dict[str, np.ndarray]:
    if self._values is None:
      self._values = _check_params(self._name, self._init(jax.random.PRNGKey(0)))
    return self._values

  def __getitem__(self, key):
    return self._get()[key]

  def __iter__(self):
    return iter(self._get())

  def __len__(self):
    return len(self._get())


class UnknownCandidateError(UserError):
  """A candidate name that is not registered."""


CANDIDATES: registry.Registry[Candidate] = registry.Registry(
    "candidate activation", "search.candidates", describe=lambda c: c.formula)
_BUILTIN: list[str] = []          # in the order the catalogue registers them
# Families with a size in their name: regex -> (size -> Candidate), added by the catalogue.
SIZED: dict[str, Callable[[str, int], Candidate]] = {}


def _check_name(name: str) -> None:
  if not name or not all(c.isalnum() or c == "_" for c in name) or name != name.lower():
    raise UserError(f"candidate name {name!r} must be lowercase letters, digits and '_'")


def _check_params(name: str, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  out = {}
  for p, v in params.items():
    if not isinstance(p, str) or not p.isidentifier():
      raise UserError(f"candidate {name!r}: parameter name {p!r} must be an identifier")
    arr = np.asarray(v, np.float32)
    if not np.all(np.isfinite(arr)):
      raise UserError(f"candidate {name!r}: initial value of {p!r} is not finite")
    out[p] = arr
  return out


def candidate(name: str, fn: Callable[..., jax.Array], formula: str,
              params: Mapping[str, Any] | None = None, *,
              init: Callable[[jax.Array], Mapping[str, Any]] | None = None,
              kind: str | None = None, source: str = "", family: str | None = None,
              code: str | None = None, builtin: bool = False) -> Candidate:
  """A checked ``Candidate``, not registered (arguments as ``register``; ``builtin`` for the
  catalogue's own)."""
  _check_name(name)
  values = _Drawn(name, init) if init is not None else _check_params(name, params or {})
  kind = kind or ("parametric" if init is not None or params else "fixed")
  if kind not in KINDS:
    raise UserError(f"candidate {name!r}: kind must be one of {', '.join(KINDS)}")
  if code is None and not builtin:
    code = registry.current_code() or getattr(fn, "__module__", None) or "__main__"
  return Candidate(name, fn, formula, values, init, kind, source, None if builtin else code,
                   family)


def register(name: str, fn: Callable[..., jax.Array], formula: str,
             params: Mapping[str, Any] | None = None, *, overwrite: bool = False,
             init: Callable[[jax.Array], Mapping[str, Any]] | None = None,
             kind: str | None = None, source: str = "", family: str | None = None,
             code: str | None = None, builtin: bool = False) -> Candidate:
  """Adds a candidate to the registry and returns it.

  Args:
    name: the key used in configs; lowercase letters, digits and ``_``.
    fn: ``fn(x, **params)``, elementwise and differentiable almost everywhere; a vector
      parameter is read from its trailing axis (see the module docstring).
    formula: plain-text formula, e.g. ``"x * sigmoid(beta * x)"``.
    params: initial values of learnable parameters, scalars or arrays, e.g. ``{"beta": 1.0}``.
    overwrite: replace an existing candidate of the same name.
    init: ``init(key) -> params`` where parameters start random (``params`` is then taken
      from ``init(PRNGKey(0))`` for shapes and pictures).
    kind: ``fixed``, ``parametric`` or ``learned`` (default: fixed without parameters,
      parametric with them).
    source: the paper or page the formula comes from.
    family: the parametric family a fixed candidate belongs to, if any.
    code: the user code that registers it; default: the file or module being loaded by
      ``--config``/``--import`` (``loading``), else ``fn``'s module.
    builtin: for the catalogue's own (``space/candidates``).
  """
  _check_name(name)
  if (name in CANDIDATES or _sized(name, build=False)) and not overwrite:
    raise UserError(f"candidate {name!r} is already registered (pass overwrite=True)")
  cand = candidate(name, fn, formula, params, init=init, kind=kind, source=source,
                   family=family, code=code, builtin=builtin)
  if cand.code is None and name not in _BUILTIN:
    _BUILTIN.append(name)
  return CANDIDATES.add(name, cand, builtin=cand.code is None, code=cand.code)


def unregister(name: str) -> None:
  """Removes a candidate (used by tests that register their own)."""
  CANDIDATES.remove(name)


_MADE: dict[str, Candidate] = {}  # sized candidates built so far (one object per name)


def _sized(name: str, build: bool = True) -> Candidate | bool | None:
  """The member of a sized family named ``name`` (``maxout_k4``), built on first use; with
  ``build`` False, whether the name is one."""
  if name in _MADE:
    return _MADE[name]
  for pattern, make in SIZED.items():
    m = re.fullmatch(pattern, name)
    if m and not build:
      return True
    if m:
      size = int(m.group(1))
      if not 1 <= size <= 64:
        raise UserError(f"candidate {name!r}: the size must lie in 1..64")
      _MADE[name] = make(name, size)
      return _MADE[name]
  return None


def get(name: str) -> Candidate:
  """The candidate called ``name``; an unknown name lists the known ones."""
  cand = CANDIDATES.get(name) if isinstance(name, str) else None
  if cand is None and isinstance(name, str):
    cand = _sized(name)
  if cand is None:
    raise UnknownCandidateError(
        f"unknown candidate activation {name!r}; known: {', '.join(names())} "
        "(and the groups " + ", ".join(GROUPS) + ")")
  return cand


def known(name: str) -> bool:
  try:
    get(name)
  except UserError:
    return False
  return True


def group(name: str) -> list[str] | None:
  """The members of group ``name`` (None if it is not a group): ``all`` is every registered
  candidate; ``fixed``, ``parametric``, ``learned`` by kind; ``default`` the base config's
  eight; ``wide`` the experiments' sixteen."""
  if name not in GROUPS:
    return None
  if name == "default":
    return list(DEFAULT)
  if name == "wide":
    return list(WIDE)
  return [n for n in names() if name == "all" or CANDIDATES[n].kind == name]


GROUPS = ("all", "fixed", "parametric", "learned", "default", "wide")
# The eight candidates of the base config (group ``default``).
DEFAULT = ("relu", "gelu", "silu", "tanh", "sin", "elu", "softplus", "gaussian")
# The experiments' candidates (group ``wide``): the eight, the six fixed candidates that beat
# all eight alone on the MNIST-1D MLP's val split (the whole catalogue screened, 3 seeds:
# docs/choosing-defaults.md), and the parametric and learned ones a user tries next.
WIDE = (*DEFAULT, "tanh_shrink", "soft_shrink", "signed_square", "x_asinh_sq", "snake", "elish",
        "swish_beta", "pau")


def expand(candidate_names: Sequence[str]) -> list[str]:
  """A candidate list with group names replaced by their members (first mention kept)."""
  out: list[str] = []
  for n in candidate_names:
    members = group(n) if isinstance(n, str) else None
    out += [m for m in (members if members is not None else [n]) if m not in out]
  return out


def resolve(candidate_names: Sequence[str]) -> tuple[Candidate, ...]:
  """Looks up a candidate list (groups expanded), rejecting unknown names, duplicates and
  empty lists."""
  if isinstance(candidate_names, str) or not candidate_names:
    raise UserError("search.candidates must be a non-empty list of candidate names")
  if len(set(candidate_names)) != len(candidate_names):
    raise UserError(f"search.candidates has duplicates: {list(candidate_names)}")
  return tuple(get(n) for n in expand(candidate_names))


def names() -> list[str]:
  """Registered names: the built-ins in catalogue order, then users' in registration order."""
  return [n for n in _BUILTIN if n in CANDIDATES] + [n for n in CANDIDATES if n not in _BUILTIN]


def builtin_names() -> list[str]:
  """The catalogue's candidates (``space/candidates``), in its order."""
  return list(_BUILTIN)


def all_candidates() -> list[Candidate]:
  return [CANDIDATES[n] for n in names()]


def code_refs(candidate_names: Sequence[str]) -> list[str]:
  """The user code (files, modules) that registered these candidates, in first-use order."""
  refs: list[str] = []
  for n in candidate_names:
    cand = CANDIDATES.get(n)
    if cand is not None and cand.code and cand.code not in refs:
      refs.append(cand.code)
  return refs


def params_to_record(params: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, dict]]:
  """``{candidate: {param: array}}`` -> the record's form, ``{candidate: {param: {"shape":
  [...], "value": nested lists}}}`` (schema v2 of ``architecture.json``)."""
  return {c: {p: {"shape": list(np.shape(v)), "value": np.asarray(v, np.float64).tolist()}
              for p, v in ps.items()} for c, ps in params.items() if ps}


def params_from_record(params: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """The record's form (``params_to_record``) -> ``{candidate: {param: float32 array}}``."""
  return {c: {p: np.asarray(v["value"], np.float32).reshape(v["shape"]) for p, v in ps.items()}
          for c, ps in params.items()}


def require(candidate_names: Sequence[str], code: Sequence[str], where: str) -> None:
  """Every name is a registered candidate; otherwise one ``UserError`` naming the user code
  (``code``: files or modules recorded with a run) to pass with ``--import``. Nothing is
  imported here: the user decides what code runs."""
  missing = [n for n in candidate_names if not known(n)]
  if not missing:
    return
  if code:
    raise UserError(f"{where}: candidate {missing[0]!r} is not registered here; it comes from "
                    f"{comes_from(code)}")
  raise UserError(f"{where}: unknown candidate activation {missing[0]!r} (no user code is "
                  "recorded that registers it)")
