"""Every registered candidate, built-in or user's, goes through every property test here."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from actsearch import architecture
from actsearch.errors import UserError
from actsearch.space import activations
from actsearch.space.mixed import MixedActivation
from actsearch.strategies import discretize

SELU_A, SELU_S = 1.6732632423543772, 1.0507009873554805


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


# Independent numpy definitions of the built-ins (from the papers' formulas).
REFERENCE = {
    "identity": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: SELU_S * np.where(x > 0, x, SELU_A * np.expm1(x)),
    "celu": lambda x: np.maximum(x, 0) + np.minimum(0, np.expm1(x)),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
    "gelu_exact": lambda x: 0.5 * x * (1 + special.erf(x / np.sqrt(2))),
    "silu": lambda x: x * _sigmoid(x),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "hard_swish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "relu6": lambda x: np.clip(x, 0, 6),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "log_sigmoid": lambda x: -np.log1p(np.exp(-x)),
    "sin": np.sin,
    "cos": np.cos,
    "gaussian": lambda x: np.exp(-x * x),
    "square": lambda x: x * x,
    "abs": np.abs,
    "prelu": lambda x, slope: np.where(x >= 0, x, slope * x),
    "swish_beta": lambda x, beta: x * _sigmoid(beta * x),
}

REQUIRED = ["identity", "relu", "leaky_relu", "elu", "selu", "celu", "gelu", "gelu_exact", "silu",
            "mish", "softplus", "tanh", "sigmoid", "hard_tanh", "hard_sigmoid", "hard_swish",
            "relu6", "softsign", "log_sigmoid", "sin", "gaussian", "square", "abs"]

# Away from the kinks of the piecewise candidates (0, +-1, +-3, 6).
X = np.array([-4.2, -2.7, -1.3, -0.4, 0.3, 0.8, 1.6, 2.6, 4.4, 7.1], np.float32)


def _user_candidate():
  return activations.register("test_cubic_tanh", lambda x, a: jnp.tanh(a * x ** 3),
                              "tanh(a x^3)", {"a": 0.5}, overwrite=True)


_user_candidate()  # joins the table below like a built-in
ALL = activations.names()
PARAMETRIC = [n for n in ALL if activations.get(n).params]


def _call(cand, x):
  return cand.fn(x, **cand.params)


def test_required_builtins_are_registered():
  missing = set(REQUIRED) - set(activations.names())
  assert not missing


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_builtin_matches_its_formula(name):
  cand = activations.get(name)
  got = np.asarray(_call(cand, jnp.asarray(X)))
  np.testing.assert_allclose(got, REFERENCE[name](X.astype(np.float64), **cand.params),
                             rtol=2e-5, atol=2e-6)


def test_every_builtin_has_a_reference():
  builtins = {b[0] for b in activations.BUILTINS}
  assert builtins <= set(REFERENCE), builtins - set(REFERENCE)


@pytest.mark.parametrize("name", ALL)
def test_finite_values_and_gradients_over_a_wide_range(name):
  cand = activations.get(name)
  x = jnp.linspace(-30.0, 30.0, 241)
  y = _call(cand, x)
  g = jax.vmap(jax.grad(lambda v: _call(cand, v)))(x)
  assert y.shape == x.shape
  assert bool(jnp.all(jnp.isfinite(y))) and bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("name", ALL)
def test_gradient_matches_finite_differences(name):
  cand = activations.get(name)
  with jax.enable_x64(True):
    x = jnp.asarray(X, jnp.float64)
    params = {k: jnp.float64(v) for k, v in cand.params.items()}
    f = lambda v: cand.fn(v, **params)
    grad = jax.vmap(jax.grad(f))(x)
    h = 1e-6
    fd = (f(x + h) - f(x - h)) / (2 * h)
  np.testing.assert_allclose(np.asarray(grad), np.asarray(fd), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", PARAMETRIC)
def test_parameter_gradients_match_finite_differences(name):
  cand = activations.get(name)
  with jax.enable_x64(True):
    x = jnp.asarray(X, jnp.float64)
    for p, init in cand.params.items():
      def f(v, p=p):
        return jnp.sum(cand.fn(x, **{**cand.params, p: v}))
      grad = jax.grad(f)(jnp.float64(init))
      fd = (f(init + 1e-6) - f(init - 1e-6)) / 2e-6
      np.testing.assert_allclose(float(grad), float(fd), rtol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_every_candidate_round_trips_through_architecture_json(name, tmp_path):
  cands = sorted({name, "relu"})
  params = {name: {p: np.float32(v) for p, v in activations.get(name).params.items()}}
  weights = np.array([0.9 if c == name else 0.1 for c in cands])
  [layer], _ = discretize.argmax([discretize.SlotView("block0/act", weights, tuple(cands),
                                                      params)])
  arch = architecture.make([layer], candidates=cands, relaxation="softmax", granularity="layer",
                           model={"name": "mlp"}, data={}, metrics={}, seed=0)
  path = tmp_path / "a.json"
  architecture.save(str(path), arch)
  loaded = architecture.load(str(path))
  assert loaded == json.loads(json.dumps(arch))
  assert loaded["layers"][0]["choice"] == name
  assert loaded["layers"][0]["params"] == (
      {name: dict(activations.get(name).params)} if activations.get(name).params else {})


def test_unknown_name_is_a_user_error_listing_the_known_ones():
  with pytest.raises(UserError) as e:
    activations.get("swishh")
  assert "swishh" in str(e.value) and "relu" in str(e.value) and "gaussian" in str(e.value)


def test_register_rejects_duplicates_and_bad_names():
  with pytest.raises(UserError):
    activations.register("relu", jax.nn.relu, "max(x, 0)")
  with pytest.raises(UserError):
    activations.register("Bad Name", jax.nn.relu, "x")


def test_user_candidate_trains_in_a_mixed_slot():
  from flax import nnx
  slot = MixedActivation(["relu", "test_cubic_tanh"], channels=3, rngs=nnx.Rngs(0))
  x = jnp.linspace(-1, 1, 12).reshape(4, 3)
  grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(slot)
  assert set(slot.candidate_params()) == {"test_cubic_tanh"}
  assert float(jnp.abs(grads["p_test_cubic_tanh__a"][...])) > 0
