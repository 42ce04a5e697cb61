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
    "param_sigmoid": lambda x, a, b, c: a * _sigmoid(b * x + c),
    "param_tanh": lambda x, a, b, c: a * np.tanh(b * x + c),
    "scaled_sigmoid": lambda x, a, b: a * _sigmoid(x) + b,
    "cube": lambda x: x ** 3,
    "asinh": np.arcsinh,
    "atan": np.arctan,
    "erf": special.erf,
    "sinc": lambda x: np.sinc(x / np.pi),
    "exp": lambda x: np.exp(np.clip(x, -10, 10)),
    "sinh": lambda x: np.sinh(np.clip(x, -10, 10)),
    "cosh": lambda x: np.cosh(np.clip(x, -10, 10)),
    "bent_identity": lambda x: (np.sqrt(x * x + 1) - 1) / 2 + x,
    "snake": lambda x: x + np.sin(x) ** 2,
    "gcu": lambda x: x * np.cos(x),
    "squared_relu": lambda x: np.maximum(x, 0) ** 2,
    "soft_shrink": lambda x: np.sign(x) * np.maximum(np.abs(x) - 0.5, 0),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0),
    "tanh_shrink": lambda x: x - np.tanh(x),
    "isru": lambda x: x / np.sqrt(1 + x * x),
    "tanhexp": lambda x: x * np.tanh(np.exp(np.clip(x, -10, 10))),
    "logish": lambda x: x * np.log(1 + _sigmoid(x)),
    "elish": lambda x: np.where(x >= 0, x, np.expm1(np.minimum(x, 0))) * _sigmoid(x),
    "dsilu": lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x))),
    "ricker": lambda x: (1 - x * x) * np.exp(-x * x / 2),
    "triangle": lambda x: np.maximum(0, 1 - np.abs(x)),
    "log_cosh": lambda x: np.log(np.cosh(x)),
    "lisht": lambda x: x * np.tanh(x),
    "symlog": lambda x: np.sign(x) * np.log1p(np.abs(x)),
    "penalized_tanh": lambda x: np.where(x > 0, np.tanh(x), 0.25 * np.tanh(x)),
    "gompertz": lambda x: np.exp(-np.exp(-np.clip(x, -10, 10))),
    "gauss_x": lambda x: x * np.exp(-x * x),
    "gelu_sin": lambda x: (0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
                           + np.sin(x)),
    "morlet": lambda x: np.cos(1.75 * x) * np.exp(-x * x / 2),
    "signed_square": lambda x: x * np.abs(x),
    "lorentzian": lambda x: 1 / (1 + x * x),
    "log1p_square": lambda x: np.log1p(x * x),
    "huber": lambda x: np.where(np.abs(x) <= 1, x * x / 2, np.abs(x) - 0.5),
    "sin_relu": lambda x: np.sin(x) + np.maximum(x, 0),
    "srelu": lambda x: np.where(x > 1, 1 + 0.25 * (x - 1),
                                np.where(x < -1, -1 + 0.25 * (x + 1), x)),
    "isrlu": lambda x: np.where(x >= 0, x, x / np.sqrt(1 + x * x)),
    "max_sigmoid": lambda x: np.maximum(x, _sigmoid(x)),
    "cos_minus_x": lambda x: np.cos(x) - x,
    "min_sin": lambda x: np.minimum(x, np.sin(x)),
    "atan_sq_minus_x": lambda x: np.arctan(x) ** 2 - x,
    "max_tanh": lambda x: np.maximum(x, np.tanh(x)),
    "sinc_plus_x": lambda x: np.sinc(x / np.pi) + x,
    "x_asinh_sq": lambda x: x * np.arcsinh(x) ** 2,
    "repu3": lambda x: np.maximum(x, 0) ** 3,
    "cubic": lambda x: x ** 3 + x,
    "x2_gauss": lambda x: x * x * np.exp(-x * x),
    "ncu": lambda x: x - x ** 3,
    "hermite4": lambda x: x ** 4 - 6 * x * x + 3,
    # Learned shapes, parameters read from their trailing axis.
    "pau": lambda x, num, den: (sum(num[..., j] * np.clip(x, -100, 100) ** j for j in range(6))
                                / (1 + sum(np.abs(den[..., j] * np.clip(x, -100, 100) ** (j + 1))
                                           for j in range(4)))),
    "maxout": lambda x, a, b: np.max(x[..., None] * a + b, -1),
    "apl": lambda x, a, b: np.maximum(x, 0) + np.sum(a * np.maximum(b - x[..., None], 0), -1),
    "nn_act": lambda x, w, c, v, u, d: np.sum(v * np.tanh(x[..., None] * w + c), -1) + u * x + d,
}

REQUIRED = ["identity", "relu", "leaky_relu", "elu", "selu", "celu", "gelu", "gelu_exact", "silu",
            "mish", "softplus", "tanh", "sigmoid", "hard_tanh", "hard_sigmoid", "hard_swish",
            "relu6", "softsign", "log_sigmoid", "sin", "gaussian", "square", "abs",
            "param_sigmoid", "param_tanh", "scaled_sigmoid", "prelu", "swish_beta", "pau",
            "maxout", "apl", "nn_act"]

# Away from the kinks of the piecewise candidates (0, +-0.5, +-1, +-3, 6, APL's hinges).
X = np.array([-4.2, -2.7, -1.3, -0.4, 0.3, 0.8, 1.6, 2.6, 4.4, 7.1], np.float32)
# The wide grid of the safety test: |x| up to 1e4.
WIDE = np.concatenate([np.linspace(-1e4, 1e4, 201), np.linspace(-30, 30, 241),
                       [-1e4, -1e3, -88.8, 88.8, 1e3, 1e4, 0.0, 1e-30]]).astype(np.float32)


def _user_candidate():
  return activations.register("test_cubic_tanh", lambda x, a: jnp.tanh(a * x ** 3),
                              "tanh(a x^3)", {"a": 0.5}, overwrite=True)


def _user_vector_candidate():
  """A user's candidate with a vector parameter (a polynomial's coefficients)."""
  return activations.register(
      "test_poly", lambda x, c: c[..., 0] * x + c[..., 1] * jnp.tanh(x) + c[..., 2],
      "c0 x + c1 tanh(x) + c2", {"c": [1.0, 0.5, 0.0]}, overwrite=True)


_user_candidate()  # join the table below like built-ins
_user_vector_candidate()
REFERENCE["test_cubic_tanh"] = lambda x, a: np.tanh(a * x ** 3)
REFERENCE["test_poly"] = lambda x, c: c[..., 0] * x + c[..., 1] * np.tanh(x) + c[..., 2]
SIZED = ["maxout_k5", "apl_s3", "nn_act_w4"]  # members of sized families: formula, JSON
ALL = activations.names()
PARAMETRIC = [n for n in ALL if activations.get(n).params]


def _call(cand, x):
  return cand.fn(x, **cand.params)


def _perturbed(cand, scale=0.1, seed=0):
  """The candidate's initial parameters moved a little (learned values, not the initial)."""
  rng = np.random.default_rng(seed)
  return {p: (np.asarray(v, np.float64) + scale * rng.standard_normal(np.shape(v)))
          for p, v in cand.params.items()}


def test_required_builtins_are_registered():
  missing = set(REQUIRED) - set(activations.names())
  assert not missing


@pytest.mark.parametrize("name", ALL + SIZED)
def test_candidate_matches_its_formula(name):
  cand = activations.get(name)
  ref = REFERENCE[name.rsplit("_", 1)[0] if name not in REFERENCE else name]
  params = _perturbed(cand)
  got = np.asarray(cand.fn(jnp.asarray(X), **{k: jnp.asarray(v, jnp.float32)
                                                for k, v in params.items()}))
  np.testing.assert_allclose(got, ref(X.astype(np.float64), **params), rtol=2e-5, atol=2e-5)


def test_every_builtin_has_a_reference_and_a_source():
  for name in activations.builtin_names():
    assert name in REFERENCE, name
    assert activations.get(name).source and activations.get(name).formula, name


# Parameters per channel only where there are parameters (a fixed candidate is the same).
@pytest.mark.parametrize("name, per_channel",
                         [(n, False) for n in ALL] + [(n, True) for n in PARAMETRIC],
                         ids=[f"{n}-per_layer" for n in ALL] + [f"{n}-per_channel"
                                                                for n in PARAMETRIC])
def test_finite_values_and_gradients_up_to_1e4(name, per_channel):
  """Values, input gradients and parameter gradients are finite for |x| up to 1e4, with the
  parameters per layer and per channel (the grid's entries as 4 channels)."""
  cand = activations.get(name)
  x = jnp.asarray(WIDE[: len(WIDE) // 4 * 4].reshape(-1, 4))
  params = cand.initial(jax.random.key(1), 4 if per_channel else None)
  y = cand.fn(x, **params)
  assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))
  gx, gp = jax.grad(lambda v, p: jnp.sum(cand.fn(v, **p)), argnums=(0, 1))(x, params)
  assert bool(jnp.all(jnp.isfinite(gx)))
  for p, g in gp.items():
    assert g.shape == params[p].shape and bool(jnp.all(jnp.isfinite(g))), p


@pytest.mark.parametrize("name", ALL)
def test_input_gradient_matches_finite_differences(name):
  cand = activations.get(name)
  with jax.enable_x64(True):
    x = jnp.asarray(X, jnp.float64)
    params = {k: jnp.asarray(v, jnp.float64) for k, v in _perturbed(cand).items()}
    f = lambda v: cand.fn(v, **params)
    grad = jax.vmap(jax.grad(f))(x)
    h = 1e-6
    fd = (f(x + h) - f(x - h)) / (2 * h)
  np.testing.assert_allclose(np.asarray(grad), np.asarray(fd), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", PARAMETRIC)
def test_parameter_gradients_match_finite_differences(name):
  """Every entry of every parameter, against central differences in float64."""
  cand = activations.get(name)
  with jax.enable_x64(True):
    x = jnp.asarray(X, jnp.float64)
    base = {k: jnp.asarray(v, jnp.float64) for k, v in _perturbed(cand).items()}

    def f(params):
      return jnp.sum(cand.fn(x, **params) * jnp.linspace(0.5, 1.5, x.size))
    grads = jax.grad(f)(base)
    for p, value in base.items():
      flat = np.asarray(value).reshape(-1)
      for i in range(flat.size):
        step = np.zeros_like(flat)
        step[i] = 1e-6
        up = {**base, p: jnp.asarray((flat + step).reshape(value.shape))}
        down = {**base, p: jnp.asarray((flat - step).reshape(value.shape))}
        fd = (f(up) - f(down)) / 2e-6
        np.testing.assert_allclose(float(np.asarray(grads[p]).reshape(-1)[i]), float(fd),
                                   rtol=1e-5, atol=1e-7, err_msg=f"{name}.{p}[{i}]")


@pytest.mark.parametrize("name", ALL + SIZED)
def test_every_candidate_round_trips_through_architecture_json(name, tmp_path):
  cands = sorted({name, "relu"})
  params = {name: {p: np.asarray(v, np.float32) for p, v in _perturbed(activations.get(name))
                   .items()}}
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
  assert loaded["layers"][0]["formula"] == activations.get(name).formula
  back = activations.params_from_record(loaded["layers"][0]["params"])
  assert set(back) == ({name} if activations.get(name).params else set())
  for p, v in back.get(name, {}).items():
    np.testing.assert_array_equal(v, params[name][p])  # float32 -> JSON -> float32, exactly


_REBUILD = """
import json, sys
import numpy as np, jax.numpy as jnp
from actsearch import architecture
from actsearch.models import registry as models
arch = architecture.load(sys.argv[1])
x = jnp.asarray(np.load(sys.argv[2]))
layers = {l["name"]: {**l, "params": __import__("actsearch.space.activations", fromlist=["x"])
                      .params_from_record(l.get("params", {}))} for l in arch["layers"]}
make = models.fixed_slots(layers, arch["param_granularity"])
out = {l["name"]: np.asarray(make(l["name"], 4)(x)) for l in arch["layers"]}
np.savez(sys.argv[3], **{k.replace("/", "_"): v for k, v in out.items()})
"""


@pytest.mark.slow  # a fresh process building a slot of every candidate: about 15 s
def test_every_slot_rebuilt_from_architecture_json_in_a_fresh_process_is_bit_equal(tmp_path):
  """One searched slot per candidate (with others beside it), its parameters moved from their
  initial values; the record's slots, rebuilt in one fresh process, give the chosen functions'
  outputs with the same parameters bit for bit."""
  import subprocess
  import sys

  from flax import nnx

  from actsearch.space.mixed import MixedActivation

  user = [n for n in ALL if n.startswith("test_")]
  x = np.linspace(-6, 6, 64, dtype=np.float32).reshape(16, 4)
  layers, expected = [], {}
  for i, name in enumerate(n for n in ALL if n not in user):
    slot_name = f"block{i}/act"
    others = [c for c in ("relu", "tanh") if c != name]
    slot = MixedActivation([name, *others], channels=4, rngs=nnx.Rngs(i), name=slot_name,
                           param_granularity="channel" if i % 2 else "layer")
    for p, v in _perturbed(slot.candidates[0], seed=i).items():
      var = getattr(slot, f"p_{name}__{p}")
      var[...] = var[...] + jnp.asarray(v - np.asarray(slot.candidates[0].params[p]), jnp.float32)
    view = discretize.slot_views(nnx.List([slot]))[0]
    view = discretize.SlotView(view.name, np.array([0.8, 0.1, 0.1][:len(view.candidates)]),
                               view.candidates, view.params)
    [layer], _ = discretize.argmax([view])
    assert layer["choice"] == name
    layers.append(layer)
    cand = slot.candidates[0]
    expected[slot_name] = np.asarray(cand.fn(jnp.asarray(x), **slot.candidate_params().get(
        name, {})))
  arch = architecture.make(layers, candidates=["relu"], relaxation="softmax",
                           granularity="layer", param_granularity="layer", model={"name": "mlp"},
                           data={}, metrics={}, seed=0)
  path = tmp_path / "architecture.json"
  architecture.save(str(path), arch)
  np.save(tmp_path / "x.npy", x)
  proc = subprocess.run([sys.executable, "-c", _REBUILD, str(path), str(tmp_path / "x.npy"),
                         str(tmp_path / "out.npz")], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
  got = np.load(tmp_path / "out.npz")
  for slot_name, want in expected.items():
    np.testing.assert_array_equal(got[slot_name.replace("/", "_")], want, err_msg=slot_name)


def test_groups_expand_in_search_candidates():
  assert activations.expand(["relu", "parametric"])[:2] == ["relu", "prelu"]
  learned = activations.group("learned")
  assert {"pau", "maxout", "apl", "nn_act"} <= set(learned)
  assert set(activations.expand(["all"])) == set(activations.names())
  assert activations.expand(["default"]) == ["relu", "gelu", "silu", "tanh", "sin", "elu",
                                             "softplus", "gaussian"]
  fixed = activations.group("fixed")
  assert "relu" in fixed and "prelu" not in fixed and "pau" not in fixed


def test_sized_family_members_are_built_on_first_use():
  m = activations.get("maxout_k5")
  assert m is activations.get("maxout_k5") and m.params["a"].shape == (5,)
  assert activations.get("apl_s3").params["b"].shape == (3,)
  assert activations.get("nn_act_w4").params["w"].shape == (4,)
  assert "maxout_k5" not in activations.names()
  with pytest.raises(UserError, match="1..64"):
    activations.get("maxout_k0")


def test_pau_starts_as_leaky_relu():
  x = np.linspace(-3, 3, 601)
  y = np.asarray(_call(activations.get("pau"), jnp.asarray(x, jnp.float32)))
  assert np.sqrt(np.mean((y - np.where(x >= 0, x, 0.01 * x)) ** 2)) < 0.01


def test_a_random_start_differs_per_channel_and_per_key():
  cand = activations.get("nn_act")
  a = cand.initial(jax.random.key(0), 3)["w"]
  b = cand.initial(jax.random.key(1), 3)["w"]
  assert a.shape == (3, 8) and not np.array_equal(a[0], a[1]) and not np.array_equal(a, b)


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
  assert isinstance(slot.p_test_cubic_tanh__a, nnx.Param)
  assert float(jnp.abs(grads["p_test_cubic_tanh__a"][...])) > 0


def test_the_groups_are_stated_once_and_the_base_config_takes_default():
  from actsearch import configs
  assert activations.expand(["default"]) == list(activations.DEFAULT)
  assert activations.expand(["wide"]) == list(activations.WIDE)
  assert activations.WIDE[:8] == activations.DEFAULT
  assert all(activations.known(n) for n in activations.WIDE)
  assert configs.base_config().search.candidates == list(activations.DEFAULT)
