"""The fused mixed activation equals the plain sum, for every candidate with a fused rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from actsearch import activations, configs, fused
from actsearch.mixed import MixedActivation, mix, mix_reference

RULED = sorted(fused.RULES)
X = jnp.concatenate([jnp.linspace(-12.0, 12.0, 997), jnp.array([-30.0, -0.5, 0.25, 30.0])])
X = X[(jnp.abs(X) > 1e-3) & (jnp.abs(jnp.abs(X) - 1) > 1e-3) & (jnp.abs(X - 6) > 1e-3)]


def _both(names, shape, granularity):
  cands = activations.resolve(names)
  k = len(names)
  wshape = (shape[-1], k) if granularity == "channel" else (k,)
  w = jax.nn.softmax(jax.random.normal(jax.random.key(7), wshape), -1)
  x = jnp.resize(X, shape)
  g = jax.random.normal(jax.random.key(8), shape)
  ref = lambda x, w: mix_reference(x, w, cands, {})
  fus = lambda x, w: fused.mix(x, w, tuple(names))
  out = {}
  for tag, f in (("ref", ref), ("fused", fus)):
    y, vjp = jax.vjp(f, x, w)
    out[tag] = (y, *vjp(g))
  return out


def _close(a, b, scale):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6 * scale)


def test_rules_exist_for_the_benchmark_and_default_candidates():
  assert set(configs.DEFAULT_CANDIDATES) <= set(RULED)
  assert {"relu", "tanh", "sigmoid", "sin", "gelu", "silu", "elu", "softplus"} <= set(RULED)


@pytest.mark.parametrize("name", RULED)
@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_each_rule_matches_the_plain_sum_in_values_and_gradients(name, granularity):
  names = [name, "relu"] if name != "relu" else ["relu", "identity"]
  out = _both(names, (8, 6, 25), granularity)
  (y_r, dx_r, dw_r), (y_f, dx_f, dw_f) = out["ref"], out["fused"]
  _close(y_f, y_r, 1.0)
  _close(dx_f, dx_r, 1.0)
  _close(dw_f, dw_r, float(np.abs(np.asarray(dw_r)).sum()) + 1.0)  # sums over 1200 terms


@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_all_rules_together_match_the_plain_sum(granularity):
  out = _both(RULED, (64, 40), granularity)
  for a, b in zip(out["fused"], out["ref"]):
    _close(a, b, float(np.abs(np.asarray(b)).sum()) + 1.0)


def test_blocked_backward_matches_the_dense_one(monkeypatch):
  names = ("relu", "tanh", "sin", "gaussian")
  x = jax.random.normal(jax.random.key(0), (256, 512)) * 3
  assert fused._block_rows(256, 512) < 256  # more than one block
  w = jax.nn.softmax(jnp.arange(4.0))
  g = jax.random.normal(jax.random.key(1), x.shape)
  blocked = jax.vjp(lambda x, w: fused.mix(x, w, names), x, w)[1](g)
  monkeypatch.setattr(fused, "BLOCK_ELEMENTS", 1 << 30)
  dense = jax.vjp(lambda x, w: fused.mix(x, w, names), x, w)[1](g)
  for a, b in zip(blocked, dense):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-4)


def test_second_derivatives_through_the_fused_rule_match_the_plain_sum():
  names = ("relu", "tanh", "sin", "gaussian", "softplus", "gelu", "elu", "silu", "sigmoid")
  cands = activations.resolve(list(names))
  x = jnp.resize(X, (12, 10))
  w0 = jax.nn.softmax(jax.random.normal(jax.random.key(3), (len(names),)))

  def hess_w(f):  # d/dw of (sum of squared dL/dx): reverse over reverse through the VJP
    def inner(w):
      dx = jax.grad(lambda x: jnp.sum(jnp.sin(f(x, w))))(x)
      return jnp.sum(dx ** 2)
    return jax.grad(inner)(w0)
  ref = hess_w(lambda x, w: mix_reference(x, w, cands, {}))
  fus = hess_w(lambda x, w: fused.mix(x, w, names))
  np.testing.assert_allclose(np.asarray(fus), np.asarray(ref), rtol=1e-4, atol=1e-4)


def test_sincos_matches_numpy_over_a_wide_range():
  x = np.linspace(-1000, 1000, 200001, dtype=np.float32)
  s, c = fused.sincos(jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(s), np.sin(x.astype(np.float64)), atol=3e-6)
  np.testing.assert_allclose(np.asarray(c), np.cos(x.astype(np.float64)), atol=3e-6)


def test_searches_use_the_fused_path_by_default():
  slot = MixedActivation(configs.DEFAULT_CANDIDATES, channels=4, rngs=nnx.Rngs(0))
  jaxpr = str(jax.make_jaxpr(lambda x: slot(x))(jnp.ones((2, 4))))
  assert "custom_vjp_call" in jaxpr
  assert configs.base_config().search.fused is True


def test_parametric_and_user_candidates_take_the_general_path():
  cands = activations.resolve(["relu", "prelu"])
  assert not fused.supports(cands)
  x = jnp.linspace(-2, 2, 8)[:, None]
  w = jnp.array([0.3, 0.7])
  y = mix(x, w, cands, {"prelu": {"slope": jnp.array(0.2)}})
  want = 0.3 * np.maximum(x, 0) + 0.7 * np.where(x >= 0, x, 0.2 * x)
  np.testing.assert_allclose(np.asarray(y), want, rtol=1e-6)
