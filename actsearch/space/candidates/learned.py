r"""Learned candidates: shapes learned from a general family of functions R -> R.

* ``pau``: Padé activation unit (Molina, Schramowski & Kersting 2020), the 'safe' rational
  form of degrees (5, 4),
  :math:`f(x) = \frac{\sum_{j=0}^{5} a_j x^j}{1 + \sum_{j=1}^{4} |b_j x^j|}`, initialised to
  approximate leaky ReLU (slope 0.01) on [-3, 3], as the rational_activations package does by
  default. Our coefficients come from a least-squares fit on 2001 points of [-3, 3]
  (200 random starts, Levenberg-Marquardt; RMS error 0.005). The input is clamped to
  [-100, 100] before the powers.
* ``maxout`` (Goodfellow et al. 2013), per unit the max of k affine functions of the scalar
  input, :math:`f(x) = \max_j (a_j x + b_j)`; ``maxout`` has k = 3, ``maxout_kN`` k = N.
  Initialised as the tangents of softplus at k points evenly spread in [-2, 2] (every piece
  active somewhere; k = 1 is the identity).
* ``apl``: adaptive piecewise linear unit (Agostinelli et al. 2015),
  :math:`f(x) = \max(0, x) + \sum_{s=1}^{S} a_s \max(0, -x + b_s)`; ``apl`` has S = 2,
  ``apl_sN`` S = N. Initialised with :math:`a_s = 0.1` and hinges :math:`b_s` evenly spread
  in [-1, 1].
* ``nn_act``: a network R -> R of one hidden tanh layer of width H,
  :math:`f(x) = \sum_h v_h \tanh(w_h x + c_h) + u x + d` (a learned activation as in
  e.g. "network in network" activation learning); ``nn_act`` has H = 8, ``nn_act_wN`` H = N.
  Random start per slot (and per channel): :math:`w, c \sim N(0, 1)`,
  :math:`v \sim N(0, 1/H)`, :math:`u = d = 0`, drawn from the slot's own random stream.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from actsearch.space import activations

PAU_CLAMP = 100.0
# Numerator a_0..a_5 and denominator b_1..b_4, fitted to leaky_relu(x, 0.01) on [-3, 3].
PAU_LEAKY_NUM = (0.02980386, 0.61838103, 2.3222778, 3.049134, 1.48334237, 0.25055196)
PAU_LEAKY_DEN = (-1.14148542, 4.38907869, 0.87027889, -0.34653777)


def pau(x, num, den):
  x = jnp.clip(x, -PAU_CLAMP, PAU_CLAMP)
  p = num[..., 5]
  for j in range(4, -1, -1):  # Horner
    p = p * x + num[..., j]
  q = 1.0
  xj = x
  for j in range(den.shape[-1]):
    q = q + jnp.abs(den[..., j] * xj)
    xj = xj * x
  return p / q


def maxout(x, a, b):
  return jnp.max(x[..., None] * a + b, axis=-1)


def maxout_init(k: int) -> dict:
  if k == 1:
    return {"a": np.ones(1), "b": np.zeros(1)}
  t = np.linspace(-2.0, 2.0, k)
  a = 1.0 / (1.0 + np.exp(-t))  # softplus'(t)
  return {"a": a, "b": np.log1p(np.exp(t)) - a * t}


def apl(x, a, b):
  return jax.nn.relu(x) + jnp.sum(a * jax.nn.relu(b - x[..., None]), axis=-1)


def apl_init(s: int) -> dict:
  return {"a": np.full(s, 0.1), "b": np.linspace(-1.0, 1.0, s) if s > 1 else np.zeros(1)}


def nn_act(x, w, c, v, u, d):
  h = jnp.tanh(x[..., None] * w + c)
  return jnp.sum(v * h, axis=-1) + u * x + d


def nn_act_init(width: int):
  def init(key):
    kw, kc, kv = jax.random.split(key, 3)
    return {"w": jax.random.normal(kw, (width,)), "c": jax.random.normal(kc, (width,)),
            "v": jax.random.normal(kv, (width,)) / np.sqrt(width),
            "u": jnp.zeros(()), "d": jnp.zeros(())}
  return init


def _maxout(name: str, k: int) -> activations.Candidate:
  return activations.candidate(
      name, maxout, f"max_j (a_j x + b_j), j = 1..{k}  (init: tangents of softplus)",
      maxout_init(k), kind="learned", source="Goodfellow et al. 2013 (maxout)", builtin=True)


def _apl(name: str, s: int) -> activations.Candidate:
  return activations.candidate(
      name, apl, f"max(0, x) + sum_s a_s max(0, b_s - x), s = 1..{s}", apl_init(s),
      kind="learned", source="Agostinelli et al. 2015 (APL)", builtin=True)


def _nn_act(name: str, width: int) -> activations.Candidate:
  return activations.candidate(
      name, nn_act, f"sum_h v_h tanh(w_h x + c_h) + u x + d, h = 1..{width}  (random init)",
      init=nn_act_init(width), kind="learned", source="a learned network R -> R",
      builtin=True)


activations.register(
    "pau", pau, "(a0 + a1 x + ... + a5 x^5) / (1 + |b1 x| + ... + |b4 x^4|)  "
    "(init: leaky_relu)", {"num": np.asarray(PAU_LEAKY_NUM), "den": np.asarray(PAU_LEAKY_DEN)},
    kind="learned", source="Molina, Schramowski & Kersting 2020 (PAU, safe form)", builtin=True)
for _base, _size, _make, _letter in (("maxout", 3, _maxout, "k"), ("apl", 2, _apl, "s"),
                                     ("nn_act", 8, _nn_act, "w")):
  _cand = _make(_base, _size)
  activations.register(_base, _cand.fn, _cand.formula, init=_cand.init,
                       params=None if _cand.init else _cand.params, kind="learned",
                       source=_cand.source, builtin=True)
  activations.SIZED[rf"{_base}_{_letter}(\d+)"] = _make
