r"""Fixed candidates: functions of the activation literature, without parameters.

Numerically safe for :math:`|x|` up to 1e4: inputs are clamped before ``exp``, ``sinh``,
``cosh`` and divisions (clamping the output instead would give an inf * 0 gradient), and
divisions by :math:`x` take the series near 0. Sources: the papers named per candidate;
"Ramachandran et al. 2017" is the unary set of *Searching for Activation Functions*
(arXiv:1710.05941), which searched over x, |x|, x^2, x^3, exp, sin, cos, sinh, cosh, tanh,
asinh, atan, sinc, erf, sigmoid, softplus, exp(-x^2) and others.

``family`` names the family a candidate is counted with by ``actsearch candidates``: the
parametric family it is a member of (ReLU is PReLU at slope 0, SiLU is Swish-beta at
beta = 1, sigmoid is ``param_sigmoid`` at a = b = 1, c = 0), or a candidate it equals up to an
affine map within RMS 1e-2 on [-5, 5] (``space/families.py``; measured: erf reaches the
sigmoid to 0.0035, GELU Swish-beta to 0.008, a zoomed-in hard-swish is x^2 exactly). The
residuals are in docs/candidates.md.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from actsearch.space.activations import register

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
EXP_CLAMP = 10.0  # exp, sinh, cosh: input clamped to [-10, 10] (e^10 = 22026)
RAMACHANDRAN = "Ramachandran, Zoph & Le 2017, Searching for Activation Functions (unary set)"
RAMACHANDRAN_FOUND = "Ramachandran, Zoph & Le 2017 (a function their search found)"


def gelu_tanh(x):
  return 0.5 * x * (1.0 + jnp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


def _clamped(x):
  return jnp.clip(x, -EXP_CLAMP, EXP_CLAMP)


def _sinc(x):
  small = jnp.abs(x) < 1e-3
  safe = jnp.where(small, 1.0, x)  # the division never sees 0 (nor does its gradient)
  return jnp.where(small, 1.0 - x * x / 6.0, jnp.sin(safe) / safe)


def _log_cosh(x):
  a = jnp.abs(x)
  return a + jnp.log1p(jnp.exp(-2.0 * a)) - math.log(2.0)


def _elish(x):
  neg = jnp.minimum(x, 0.0)
  return jnp.where(x >= 0, x * jax.nn.sigmoid(x), jnp.expm1(neg) * jax.nn.sigmoid(x))


# name, fn, formula, source, family
FIXED = (
    ("identity", lambda x: x, "x", "linear unit", "prelu"),
    ("relu", jax.nn.relu, "max(x, 0)", "Nair & Hinton 2010", "prelu"),
    ("leaky_relu", lambda x: jnp.where(x >= 0, x, 0.01 * x), "x if x >= 0 else 0.01 x",
     "Maas et al. 2013", "prelu"),
    ("elu", jax.nn.elu, "x if x > 0 else exp(x) - 1", "Clevert et al. 2016", None),
    ("selu", jax.nn.selu,
     f"{SELU_SCALE:.4f} * (x if x > 0 else {SELU_ALPHA:.4f} (exp(x) - 1))",
     "Klambauer et al. 2017", None),
    ("celu", jax.nn.celu, "max(x, 0) + min(0, exp(x) - 1)  (alpha = 1)", "Barron 2017",
     "elu"),
    ("gelu", gelu_tanh, "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))",
     "Hendrycks & Gimpel 2016 (tanh approximation)", "swish_beta"),
    ("gelu_exact", lambda x: jax.nn.gelu(x, approximate=False),
     "x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))", "Hendrycks & Gimpel 2016", "swish_beta"),
    ("silu", jax.nn.silu, "x sigmoid(x)", "Elfwing et al. 2018; Ramachandran et al. 2017",
     "swish_beta"),
    ("mish", lambda x: x * jnp.tanh(jax.nn.softplus(x)), "x tanh(softplus(x))",
     "Misra 2019", None),
    ("softplus", jax.nn.softplus, "log(1 + exp(x))", "Dugas et al. 2001", None),
    ("tanh", jnp.tanh, "tanh(x)", "LeCun et al. 1998", "param_sigmoid"),
    ("sigmoid", jax.nn.sigmoid, "1 / (1 + exp(-x))", "logistic function", "param_sigmoid"),
    ("hard_tanh", lambda x: jnp.clip(x, -1.0, 1.0), "clip(x, -1, 1)", "Collobert 2004", None),
    ("hard_sigmoid", lambda x: jnp.clip(x / 6.0 + 0.5, 0.0, 1.0), "relu6(x + 3) / 6",
     "Howard et al. 2019", "hard_tanh"),
    ("hard_swish", lambda x: x * jnp.clip(x / 6.0 + 0.5, 0.0, 1.0), "x relu6(x + 3) / 6",
     "Howard et al. 2019", None),
    ("relu6", lambda x: jnp.clip(x, 0.0, 6.0), "min(max(x, 0), 6)", "Krizhevsky 2010", "hard_tanh"),
    ("softsign", lambda x: x / (1.0 + jnp.abs(x)), "x / (1 + |x|)", "Bergstra et al. 2009",
     None),
    ("log_sigmoid", jax.nn.log_sigmoid, "-softplus(-x) = -log(1 + exp(-x))",
     "log of the logistic function", "softplus"),
    ("sin", jnp.sin, "sin(x)", "Sitzmann et al. 2020 (SIREN); Ramachandran et al. 2017", None),
    ("cos", jnp.cos, "cos(x)", RAMACHANDRAN, "sin"),
    ("gaussian", lambda x: jnp.exp(-x * x), "exp(-x^2)", "radial basis; Ramachandran et al. "
     "2017", None),
    ("square", lambda x: x * x, "x^2", RAMACHANDRAN, "hard_swish"),
    ("abs", jnp.abs, "|x|", RAMACHANDRAN, "prelu"),
    # Added with the catalogue of the activation literature.
    ("cube", lambda x: x * x * x, "x^3", "Chen & Manning 2014; " + RAMACHANDRAN, "tanh_shrink"),
    ("asinh", jnp.arcsinh, "asinh(x) = log(x + sqrt(x^2 + 1))", RAMACHANDRAN, "softsign"),
    ("atan", jnp.arctan, "atan(x)", RAMACHANDRAN, "param_sigmoid"),
    ("erf", jax.scipy.special.erf, "erf(x)", RAMACHANDRAN, "param_sigmoid"),
    ("sinc", _sinc, "sin(x) / x  (1 at 0)", RAMACHANDRAN, "sin"),
    ("exp", lambda x: jnp.exp(_clamped(x)), "exp(x)  (x clamped to [-10, 10])", RAMACHANDRAN,
     "elu"),
    ("sinh", lambda x: jnp.sinh(_clamped(x)), "sinh(x)  (x clamped to [-10, 10])",
     RAMACHANDRAN, None),
    ("cosh", lambda x: jnp.cosh(_clamped(x)), "cosh(x)  (x clamped to [-10, 10])",
     RAMACHANDRAN, None),
    ("bent_identity", lambda x: (jnp.sqrt(x * x + 1.0) - 1.0) / 2.0 + x,
     "(sqrt(x^2 + 1) - 1) / 2 + x", "bent identity (common activation tables)", None),
    ("snake", lambda x: x + jnp.sin(x) ** 2, "x + sin(x)^2", "Ziyin, Hartwig & Ueda 2020 "
     "(a = 1)", "param_sigmoid"),
    ("gcu", lambda x: x * jnp.cos(x), "x cos(x)", "Noel et al. 2021 (growing cosine unit)",
     None),
    ("squared_relu", lambda x: jnp.square(jax.nn.relu(x)), "max(x, 0)^2",
     "So et al. 2021 (Primer)", None),
    ("soft_shrink", lambda x: x - jnp.clip(x, -0.5, 0.5), "x - clip(x, -0.5, 0.5)",
     "soft thresholding (Donoho 1995), lambda = 0.5", None),
    ("hard_shrink", lambda x: jnp.where(jnp.abs(x) > 0.5, x, 0.0), "x if |x| > 0.5 else 0",
     "hard thresholding, lambda = 0.5", None),
    ("tanh_shrink", lambda x: x - jnp.tanh(x), "x - tanh(x)", "tanhshrink (PyTorch)", None),
    ("isru", lambda x: x * jax.lax.rsqrt(1.0 + x * x), "x / sqrt(1 + x^2)",
     "Carlile et al. 2017 (ISRU, alpha = 1)", "param_sigmoid"),
    ("tanhexp", lambda x: x * jnp.tanh(jnp.exp(_clamped(x))), "x tanh(exp(x))",
     "Liu & Di 2020", None),
    ("logish", lambda x: x * jnp.log1p(jax.nn.sigmoid(x)), "x log(1 + sigmoid(x))",
     "Zhu et al. 2021", "mish"),
    ("elish", _elish, "x sigmoid(x) if x >= 0 else (exp(x) - 1) sigmoid(x)",
     "Basirat & Roth 2018", None),
    ("dsilu", lambda x: jax.nn.sigmoid(x) * (1.0 + x * (1.0 - jax.nn.sigmoid(x))),
     "sigmoid(x) (1 + x (1 - sigmoid(x)))", "Elfwing et al. 2018 (dSiLU)", "param_sigmoid"),
    ("ricker", lambda x: (1.0 - x * x) * jnp.exp(-0.5 * x * x), "(1 - x^2) exp(-x^2 / 2)",
     "Ricker (Mexican hat) wavelet", None),
    ("triangle", lambda x: jax.nn.relu(1.0 - jnp.abs(x)), "max(0, 1 - |x|)",
     "linear B-spline (hat) basis", None),
    ("log_cosh", _log_cosh, "log(cosh(x))", "smooth absolute value", None),
    ("lisht", lambda x: x * jnp.tanh(x), "x tanh(x)", "Roy et al. 2019 (LiSHT)", None),
    ("symlog", lambda x: jnp.sign(x) * jnp.log1p(jnp.abs(x)), "sign(x) log(1 + |x|)",
     "symmetric log", None),
    ("penalized_tanh", lambda x: jnp.where(x > 0, jnp.tanh(x), 0.25 * jnp.tanh(x)),
     "tanh(x) if x > 0 else 0.25 tanh(x)", "Xu, Huang & Li 2016", "prelu"),
    ("gompertz", lambda x: jnp.exp(-jnp.exp(-_clamped(x))), "exp(-exp(-x))",
     "Gompertz function", "softplus"),
    ("gauss_x", lambda x: x * jnp.exp(-x * x), "x exp(-x^2)", "derivative of the Gaussian "
     "(Hermite function)", None),
    ("gelu_sin", lambda x: gelu_tanh(x) + jnp.sin(x), "gelu(x) + sin(x)",
     "sum of two unary functions, as Ramachandran et al. 2017 compose them", "param_sigmoid"),
    ("srelu", lambda x: jnp.where(x > 1.0, 1.0 + 0.25 * (x - 1.0),
                                  jnp.where(x < -1.0, -1.0 + 0.25 * (x + 1.0), x)),
     "x if |x| <= 1 else sign(x) (1 + 0.25 (|x| - 1))",
     "Jin et al. 2016 (S-shaped ReLU, thresholds +-1 and slopes 0.25 fixed)", "prelu"),
    ("isrlu", lambda x: jnp.where(x >= 0, x, x * jax.lax.rsqrt(1.0 + x * x)),
     "x if x >= 0 else x / sqrt(1 + x^2)", "Carlile et al. 2017 (ISRLU, alpha = 1)", "elu"),
    ("morlet", lambda x: jnp.cos(1.75 * x) * jnp.exp(-0.5 * x * x),
     "cos(1.75 x) exp(-x^2 / 2)", "Morlet wavelet (wavelet networks, Zhang & Benveniste 1992)",
     None),
    ("signed_square", lambda x: x * jnp.abs(x), "x |x|", "signed power sign(x) |x|^2", None),
    ("lorentzian", lambda x: 1.0 / (1.0 + x * x), "1 / (1 + x^2)", "Cauchy (Lorentzian) "
     "kernel", None),
    ("log1p_square", lambda x: jnp.log1p(x * x), "log(1 + x^2)", "Cauchy (Lorentzian) loss "
     "shape", None),
    ("huber", lambda x: jnp.where(jnp.abs(x) <= 1.0, 0.5 * x * x, jnp.abs(x) - 0.5),
     "x^2 / 2 if |x| <= 1 else |x| - 1/2", "Huber 1964", None),
    ("sin_relu", lambda x: jnp.sin(x) + jax.nn.relu(x), "sin(x) + max(x, 0)",
     "sum of two unary functions (Ramachandran et al. 2017)", "param_sigmoid"),
    # The novel functions Ramachandran et al. 2017 found by their search (beside Swish).
    ("max_sigmoid", lambda x: jnp.maximum(x, jax.nn.sigmoid(x)), "max(x, sigmoid(x))",
     RAMACHANDRAN_FOUND, "prelu"),
    ("cos_minus_x", lambda x: jnp.cos(x) - x, "cos(x) - x", RAMACHANDRAN_FOUND,
     "param_sigmoid"),
    ("min_sin", lambda x: jnp.minimum(x, jnp.sin(x)), "min(x, sin(x))", RAMACHANDRAN_FOUND,
     "sin"),
    ("atan_sq_minus_x", lambda x: jnp.arctan(x) ** 2 - x, "atan(x)^2 - x",
     RAMACHANDRAN_FOUND, None),
    ("max_tanh", lambda x: jnp.maximum(x, jnp.tanh(x)), "max(x, tanh(x))",
     RAMACHANDRAN_FOUND, "elu"),
    ("sinc_plus_x", lambda x: _sinc(x) + x, "sinc(x) + x", RAMACHANDRAN_FOUND, None),
    ("x_asinh_sq", lambda x: x * jnp.arcsinh(x) ** 2, "x asinh(x)^2", RAMACHANDRAN_FOUND,
     None),
    ("repu3", lambda x: jax.nn.relu(x) ** 3, "max(x, 0)^3",
     "rectified power unit, k = 3 (Li, Tang & Yu 2019)", None),
    ("cubic", lambda x: x * x * x + x, "x^3 + x", "odd cubic polynomial activation "
     "(polynomial networks, e.g. Livni, Shalev-Shwartz & Shamir 2014)", None),
    ("x2_gauss", lambda x: x * x * jnp.exp(-x * x), "x^2 exp(-x^2)",
     "second-order Hermite-Gauss shape (radial basis)", None),
    ("ncu", lambda x: x - x * x * x, "x - x^3",
     "Noel et al. 2021 (non-monotonic cubic unit)", None),
    ("hermite4", lambda x: x ** 4 - 6.0 * x * x + 3.0, "x^4 - 6 x^2 + 3",
     "probabilists' Hermite polynomial He4 (polynomial activations)", None),
)

for _name, _fn, _formula, _source, _family in FIXED:
  register(_name, _fn, _formula, kind="fixed", source=_source, family=_family, builtin=True)
