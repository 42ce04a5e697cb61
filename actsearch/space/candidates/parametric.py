r"""Parametric candidates: formulas with a few learned parameters per slot (per layer or per
channel, ``search.param_granularity``), trained with the weights on the train split.

Each is one family: whatever its parameters, it counts once among the distinct families of
``actsearch candidates`` (``param_sigmoid``, ``param_tanh`` and ``scaled_sigmoid`` are even one
family up to an affine map; they are kept apart because they learn differently).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from actsearch.space.activations import register


def prelu(x, slope):
  return jnp.where(x >= 0, x, slope * x)


def swish_beta(x, beta):
  return x * jax.nn.sigmoid(beta * x)


def param_sigmoid(x, a, b, c):
  return a * jax.nn.sigmoid(b * x + c)


def param_tanh(x, a, b, c):
  return a * jnp.tanh(b * x + c)


def scaled_sigmoid(x, a, b):
  return a * jax.nn.sigmoid(x) + b


# name, fn, formula, initial values, source[, family counted with]
PARAMETRIC = (
    ("prelu", prelu, "x if x >= 0 else a x  (a learned, init 0.25)", {"slope": 0.25},
     "He et al. 2015 (PReLU)"),
    ("swish_beta", swish_beta, "x sigmoid(beta x)  (beta learned, init 1)", {"beta": 1.0},
     "Ramachandran, Zoph & Le 2017 (Swish)"),
    ("param_sigmoid", param_sigmoid, "a sigmoid(b x + c)  (init a = b = 1, c = 0)",
     {"a": 1.0, "b": 1.0, "c": 0.0}, "parametric sigmoid (e.g. Chandra & Singh 2004)"),
    ("param_tanh", param_tanh, "a tanh(b x + c)  (init a = b = 1, c = 0)",
     {"a": 1.0, "b": 1.0, "c": 0.0}, "parametric tanh (e.g. Chen & Chang 1996)",
     "param_sigmoid"),
    ("scaled_sigmoid", scaled_sigmoid, "a sigmoid(x) + b  (init a = 1, b = 0)",
     {"a": 1.0, "b": 0.0}, "scaled and shifted sigmoid", "param_sigmoid"),
)

for _name, _fn, _formula, _params, _source, *_family in PARAMETRIC:
  register(_name, _fn, _formula, _params, kind="parametric", source=_source,
           family=_family[0] if _family else None, builtin=True)
