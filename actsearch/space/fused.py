r"""The fused mixed activation: all candidates of a slot in one pass, with a custom VJP.

For weights :math:`w` (``[K]`` per layer or ``[C, K]`` per channel) and candidates
:math:`f_k`,

.. math::  y = \sum_k w_k f_k(x), \qquad
           \frac{\partial L}{\partial x} = g \sum_k w_k f_k'(x), \qquad
           \frac{\partial L}{\partial w_k} = \sum_{\text{reduced axes}} g\, f_k(x),

with :math:`g = \partial L / \partial y`. The forward pass keeps only the slot's input
:math:`x` for the backward pass (not K intermediate tensors); the backward pass recomputes
:math:`f_k` and :math:`f_k'` together, sharing subexpressions between candidates:
:math:`e = \exp(-|x|)` alone yields sigmoid, softplus, SiLU, tanh (through :math:`e^2`) and
the negative side of ELU, and sin and cos come from one range reduction. The backward pass
works in blocks of rows, and has its own VJP (from the rules' second derivatives) for
second-order hypergradients. A backward pass that needs no alpha gradient (the weight step)
computes :math:`\partial L/\partial x` alone, in one elementwise pass.

Each pass exists twice: on CPU in float32 it is the C++ kernel of ``actsearch.kernels``
(same formulas, one vectorized loop per candidate over blocks that stay in L1, rows spread
over XLA's thread pool); elsewhere, or where the kernel cannot be built, it is the XLA code
below. A plan (``implementation``) says which passes take the kernel, per pass and size
class, as measured on the machine; for those, ``jax.lax.platform_dependent`` picks the kernel
on CPU and the XLA code on other platforms when the step is lowered.

Candidates without a rule here (user-registered ones, parametric and learned ones) are added
as a plain sum beside the fused pass of the others (``mixed.mix``); results agree with the
plain sum ``mixed.mix_reference`` to float32 precision (tested for every rule).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from actsearch.space import kernels

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715

# Cephes' sinf/cosf: Cody-Waite reduction by pi/2 in three parts, minimax polynomials on
# [-pi/4, pi/4]. Accurate to float32 rounding for |x| up to about 8192.
_TWO_OVER_PI = 0.6366197723675814
_PIO2 = (1.5703125, 4.837512969970703125e-4, 7.54978995489188216e-8)
_SIN_C = (-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1)
_COS_C = (2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2)


def sincos(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  r"""``(sin x, cos x)`` from one range reduction :math:`x = k\pi/2 + r`, :math:`|r| \le \pi/4`."""
  k = jnp.round(x * _TWO_OVER_PI)
  r = ((x - k * _PIO2[0]) - k * _PIO2[1]) - k * _PIO2[2]
  z = r * r
  s = r + r * z * ((_SIN_C[0] * z + _SIN_C[1]) * z + _SIN_C[2])
  c = 1.0 - 0.5 * z + z * z * ((_COS_C[0] * z + _COS_C[1]) * z + _COS_C[2])
  q = k.astype(jnp.int32) & 3
  sin = jnp.where(q == 0, s, jnp.where(q == 1, c, jnp.where(q == 2, -s, -c)))
  cos = jnp.where(q == 0, c, jnp.where(q == 1, -s, jnp.where(q == 2, -c, s)))
  return sin, cos


def log1p_unit(e: jax.Array) -> jax.Array:
  r""":math:`\log(1 + e)` for :math:`e \in [0, 1]`, as :math:`2\,\mathrm{atanh}(s)` with
  :math:`s = e / (2 + e) \le 1/3`: an odd series to :math:`s^{13}` (error below 5e-8),
  cheaper than XLA's general ``log1p`` on CPU."""
  s = e / (2.0 + e)
  z = s * s
  p = 1.0 / 13
  for c in (1.0 / 11, 1.0 / 9, 1.0 / 7, 1.0 / 5, 1.0 / 3, 1.0):
    p = p * z + c
  return 2.0 * s * p


class _Shared:
  """Subexpressions computed at most once per pass, on first use."""

  def __init__(self, x: jax.Array):
    self.x = x

  @functools.cached_property
  def pos(self):
    return self.x > 0

  @functools.cached_property
  def e(self):  # exp(-|x|), in (0, 1]
    return jnp.exp(-jnp.abs(self.x))

  @functools.cached_property
  def sigmoid(self):
    r = 1.0 / (1.0 + self.e)
    return jnp.where(self.x >= 0, r, self.e * r)

  @functools.cached_property
  def tanh(self):
    e2 = self.e * self.e
    return jnp.sign(self.x) * (1.0 - e2) / (1.0 + e2)

  @functools.cached_property
  def sincos(self):
    return sincos(self.x)


# name -> (shared -> (f(x), f'(x), f''(x))); what a caller does not use is dead code to XLA.
Rule = Callable[[_Shared], tuple[jax.Array, jax.Array, jax.Array]]


def _zero(s):
  return jnp.zeros_like(s.x)


def _relu(s):
  return jnp.maximum(s.x, 0.0), s.pos.astype(s.x.dtype), _zero(s)


def _tanh(s):
  d = 1.0 - s.tanh * s.tanh
  return s.tanh, d, -2.0 * s.tanh * d


def _sigmoid(s):
  d = s.sigmoid * (1.0 - s.sigmoid)
  return s.sigmoid, d, d * (1.0 - 2.0 * s.sigmoid)


def _silu(s):
  sig, x = s.sigmoid, s.x
  d = sig * (1.0 - sig)
  return x * sig, sig + x * d, d * (2.0 + x * (1.0 - 2.0 * sig))


def _softplus(s):
  return (jnp.maximum(s.x, 0.0) + log1p_unit(s.e), s.sigmoid,
          s.sigmoid * (1.0 - s.sigmoid))


def _elu(s):
  return jnp.where(s.pos, s.x, s.e - 1.0), jnp.where(s.pos, 1.0, s.e), jnp.where(s.pos, 0.0, s.e)


def _gelu(s):
  x = s.x
  x2 = x * x
  u = _SQRT_2_OVER_PI * x * (1.0 + _GELU_A * x2)
  eu = jnp.exp(-2.0 * jnp.abs(u))
  t = jnp.sign(u) * (1.0 - eu) / (1.0 + eu)
  du = _SQRT_2_OVER_PI * (1.0 + 3 * _GELU_A * x2)  # u'
  sech2 = 1.0 - t * t
  f = 0.5 * x * (1.0 + t)
  df = 0.5 * (1.0 + t) + 0.5 * x * sech2 * du
  d2f = sech2 * du + 0.5 * x * sech2 * (6 * _GELU_A * _SQRT_2_OVER_PI * x - 2.0 * t * du * du)
  return f, df, d2f


def _sin(s):
  sin, cos = s.sincos
  return sin, cos, -sin


def _cos(s):
  sin, cos = s.sincos
  return cos, -sin, -cos


def _gaussian(s):
  g = jnp.exp(-s.x * s.x)
  return g, -2.0 * s.x * g, (4.0 * s.x * s.x - 2.0) * g


def _softsign(s):
  d = 1.0 + jnp.abs(s.x)
  return s.x / d, 1.0 / (d * d), -2.0 * jnp.sign(s.x) / (d * d * d)


RULES: dict[str, Rule] = {
    "identity": lambda s: (s.x, jnp.ones_like(s.x), _zero(s)),
    "relu": _relu,
    "leaky_relu": lambda s: (jnp.where(s.x >= 0, s.x, 0.01 * s.x),
                             jnp.where(s.x >= 0, 1.0, 0.01).astype(s.x.dtype), _zero(s)),
    "elu": _elu,
    "gelu": _gelu,
    "silu": _silu,
    "softplus": _softplus,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "sin": _sin,
    "cos": _cos,
    "gaussian": _gaussian,
    "square": lambda s: (s.x * s.x, 2.0 * s.x, jnp.full_like(s.x, 2.0)),
    "abs": lambda s: (jnp.abs(s.x), jnp.sign(s.x), _zero(s)),
    "relu6": lambda s: (jnp.clip(s.x, 0.0, 6.0),
                        ((s.x > 0) & (s.x < 6)).astype(s.x.dtype), _zero(s)),
    "hard_tanh": lambda s: (jnp.clip(s.x, -1.0, 1.0),
                            ((s.x > -1) & (s.x < 1)).astype(s.x.dtype), _zero(s)),
    "softsign": _softsign,
}


def covers(candidate) -> bool:
  """Whether the fused pass computes this candidate: a built-in without parameters that has a
  rule here (a user's candidate of the same name does not)."""
  from actsearch.space import activations

  return (not candidate.params and candidate.name in RULES
          and activations.known(candidate.name) and activations.get(candidate.name) is candidate)


def supports(candidates: Sequence) -> bool:
  """Whether every candidate has a fused rule (``covers``)."""
  return all(covers(c) for c in candidates)


def _weight(w: jax.Array, k: int) -> jax.Array:
  return w[..., k]  # [] per layer, [C] per channel: broadcasts against x[..., C]


def _weighted_sum(w: jax.Array, terms) -> jax.Array:
  """:math:`\\sum_k w_k t_k` for per-candidate terms, per layer or per channel."""
  out = None
  for k, t in enumerate(terms):
    term = _weight(w, k) * t
    out = term if out is None else out + term
  return out


def _reduce_axes(x, w) -> tuple[int, ...]:
  return tuple(range(x.ndim - (w.ndim - 1)))  # all axes of x but the channel axis, if any


def _values(x, names):
  """``[(f_k, f_k', f_k'')]`` of every candidate, sharing subexpressions."""
  s = _Shared(x)
  return [RULES[n](s) for n in names]


def _forward(x, w, names):
  return _weighted_sum(w, [f for f, _, _ in _values(x, names)])


class _Mixture(tuple):
  """The static part of a fused mixture: ``(names, plan)``, the candidates and the
  ``implementation.Plan`` that says which passes use the kernel, None for all of them
  (hashable, as custom VJPs' static arguments must be)."""

  names = property(lambda self: self[0])
  plan = property(lambda self: self[1])


def _use_kernel(x, m: _Mixture, kind: str) -> bool:
  return (x.dtype == jnp.float32 and x.size > 0
          and (m.plan is None or m.plan.uses_kernel(kind, x.size))
          and all(n in kernels.IDS for n in m.names) and kernels.available())


def _either(m: _Mixture, kind, xla_fn, *args):
  """The kernel's pass ``kind`` on ``args`` (``kernels.call``) where the plan takes the kernel
  for this pass and size, the computation runs on CPU in float32 and the kernel could be
  built; ``xla_fn(*args)`` otherwise."""
  if not _use_kernel(args[0], m, kind):
    return xla_fn(*args)
  return jax.lax.platform_dependent(
      *args, cpu=functools.partial(kernels.call, kind, m.names), default=xla_fn)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _mix(x, w, m):
  return _either(m, "forward", functools.partial(_forward, names=m.names), x, w)


def _mix_fwd(x, w, m):
  # symbolic_zeros: x and w arrive as CustomVJPPrimal and say whether they are perturbed.
  # A weight step differentiates the weights only, not the mixture weights: then the backward
  # pass needs dL/dx alone, one elementwise pass with no reductions. The flag travels in the
  # residuals' structure: an empty tuple, or a tuple holding one (unused) scalar.
  flag = (jnp.zeros((), x.value.dtype),) if w.perturbed else ()
  # _mix itself, not _forward: differentiated again (second-order hypergradients), the
  # forward pass then keeps x alone instead of the K slopes that autodiff would keep.
  return _mix(x.value, w.value, m), (x.value, w.value, flag)


BLOCK_ELEMENTS = 1 << 16  # 256 KiB of float32: a block's intermediates stay in cache


def _block_rows(rows: int, cols: int) -> int:
  """The largest divisor of ``rows`` whose block holds at most ``BLOCK_ELEMENTS``."""
  best = 1
  for r in range(1, rows + 1):
    if rows % r == 0 and r * cols <= BLOCK_ELEMENTS:
      best = r
  return best


def _in_row_blocks(fn, w, arrays, into):
  """``fn(w, *blocks) -> (maps, sums)`` over blocks of rows of ``arrays`` (all shaped like x):
  ``maps`` are elementwise results, put back together; ``sums`` (shaped like ``w``) are
  summed over the blocks. Blocks go one after another, so the K values, slopes and
  curvatures of a block live only while it is reduced, instead of K full-size tensors.
  ``maps[j]`` is written over ``arrays[into[j]]``, block by block, each block read before it
  is overwritten: no zero-filled output buffer (XLA copies the array if it is still needed)."""
  shape, cols = arrays[0].shape, arrays[0].shape[-1]
  flat = [a.reshape(-1, cols) for a in arrays]
  rows = flat[0].shape[0]
  r = _block_rows(rows, cols)
  if r == rows:
    maps, sums = fn(w, *flat)
    return tuple(m.reshape(shape) for m in maps), sums
  blocks = [f.reshape(rows // r, r, cols) for f in flat]

  def body(i, carry):
    bufs, acc = carry
    current = list(blocks)
    for buf, j in zip(bufs, into):
      current[j] = buf
    maps, sums = fn(w, *(jax.lax.dynamic_index_in_dim(c, i, keepdims=False) for c in current))
    bufs = tuple(jax.lax.dynamic_update_index_in_dim(buf, m, i, 0) for buf, m in zip(bufs, maps))
    return bufs, tuple(a + s for a, s in zip(acc, sums))
  zeros = jax.eval_shape(lambda *b: fn(w, *b)[1], *(f[:r] for f in flat))
  maps, sums = jax.lax.fori_loop(
      0, rows // r, body,
      (tuple(blocks[j] for j in into), tuple(jnp.zeros(z.shape, z.dtype) for z in zeros)))
  return tuple(m.reshape(shape) for m in maps), sums


def _bwd_block(names, w, x, g):
  vals = _values(x, names)
  axes = _reduce_axes(x, w)
  dw = jnp.stack([jnp.sum(g * f, axis=axes) for f, _, _ in vals], axis=-1)
  return (g * _weighted_sum(w, [df for _, df, _ in vals]),), (dw,)


def _bwd_blocked(names, x, w, g):
  (dx,), (dw,) = _in_row_blocks(functools.partial(_bwd_block, names), w, (x, g), into=(1,))
  return dx, dw.astype(w.dtype)


def _bwd_any(m, x, w, g):
  return _either(m, "backward", functools.partial(_bwd_blocked, m.names), x, w, g)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _bwd(x, w, g, m):
  return _bwd_any(m, x, w, g)


def _bwd_fwd(x, w, g, m):
  return _bwd_any(m, x, w, g), (x, w, g)


def _curvature_block(names, wb, x, g, a):
  w, b = wb
  f, df, d2f = zip(*_values(x, names))
  ag = a * g
  xbar = ag * _weighted_sum(w, d2f)
  gbar = a * _weighted_sum(w, df)
  if b is not None:
    xbar = xbar + g * _weighted_sum(b, df)
    gbar = gbar + _weighted_sum(b, f)
  wbar = jnp.stack([jnp.sum(ag * d, axis=_reduce_axes(x, w)) for d in df], axis=-1)
  return (xbar, gbar), (wbar,)


def _curvature(m, x, w, g, a, b=None):
  r"""The VJP of the backward rule, for second-order hypergradients. With cotangents
  :math:`a` (of :math:`\partial L/\partial x`) and :math:`b` (of :math:`\partial L/\partial w`,
  absent for the weight step's backward rule):
  :math:`\bar x = a g \sum_k w_k f_k'' + g \sum_k b_k f_k'`,
  :math:`\bar w_k = \sum a g f_k'`, :math:`\bar g = a \sum_k w_k f_k' + \sum_k b_k f_k`.
  The kernel's ``curvature`` passes on CPU, else XLA code in blocks of rows, like the
  backward rule itself."""
  kind, extra = ("dx_curvature", ()) if b is None else ("curvature", (b.astype(w.dtype),))
  xbar, gbar, wbar = _either(m, kind, functools.partial(_curvature_xla, m.names), x, w, g, a,
                             *extra)
  return xbar, wbar, gbar


def _curvature_xla(names, x, w, g, a, b=None):
  """``(xbar, gbar, wbar)``, in the order of the kernel's outputs."""
  (xbar, gbar), (wbar,) = _in_row_blocks(functools.partial(_curvature_block, names), (w, b),
                                         (x, g, a), into=(2, 1))
  return xbar, gbar, wbar.astype(w.dtype)


def _bwd_bwd(m, res, cts):
  x, w, g = res
  a, b = cts
  return _curvature(m, x, w, g, a, b)


_bwd.defvjp(_bwd_fwd, _bwd_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _dx_only(x, w, g, m):
  r""":math:`\partial L/\partial x = g \sum_k w_k f_k'(x)` alone, in one elementwise pass: the
  backward rule of a weight step, which needs no alpha gradient."""
  return _either(m, "dx", functools.partial(_dx_xla, m.names), x, w, g)


def _dx_xla(names, x, w, g):
  # The barrier keeps XLA from merging this recomputation with the forward pass's identical
  # subexpressions (CSE), which would keep those full-size tensors alive in between.
  x = jax.lax.optimization_barrier(x)
  return g * _weighted_sum(w, [df for _, df, _ in _values(x, names)])


def _dx_only_fwd(x, w, g, m):
  # Differentiated again only by the exact second-order hypergradient (through the train
  # gradient): keep the inputs, not the K slopes and curvatures that autodiff would keep.
  return _dx_only(x, w, g, m), (x, w, g)


def _dx_only_bwd(m, res, a):
  return _curvature(m, *res, a)


_dx_only.defvjp(_dx_only_fwd, _dx_only_bwd)


def _mix_bwd(m, res, g):
  x, w, w_perturbed = res
  if isinstance(g, jax.custom_derivatives.SymbolicZero):
    return jnp.zeros_like(x), jnp.zeros_like(w)
  if not w_perturbed:
    return _dx_only(x, w, g, m), jnp.zeros_like(w)
  return _bwd(x, w, g, m)


_mix.defvjp(_mix_fwd, _mix_bwd, symbolic_zeros=True)


def mix(x: jax.Array, weights: jax.Array, names: tuple[str, ...], plan=None) -> jax.Array:
  """The fused mixture of the candidates ``names`` (all of which must have a rule); ``plan``
  (an ``implementation.Plan``; None: every pass) says which passes take the C++ kernel where
  it applies."""
  return _mix(x, weights.astype(x.dtype), _Mixture((tuple(names), plan)))
