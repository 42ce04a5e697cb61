"""The fused mixed activation equals the plain sum, for every candidate with a fused rule."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from actsearch import configs, models
from actsearch.models import network
from actsearch.space import activations, fused, implementation, kernels
from actsearch.space.mixed import MixedActivation, mix, mix_reference
from actsearch.strategies import bilevel
from actsearch.train import objective, optim

RULED = sorted(fused.RULES)
X = jnp.concatenate([jnp.linspace(-12.0, 12.0, 997), jnp.array([-30.0, -0.5, 0.25, 30.0])])
X = X[(jnp.abs(X) > 1e-3) & (jnp.abs(jnp.abs(X) - 1) > 1e-3) & (jnp.abs(X - 6) > 1e-3)]


@pytest.fixture(params=["kernel", "xla"])
def impl(request, monkeypatch):
  """The fused passes as the C++ kernel (CPU, float32) or as XLA code (other platforms, other
  dtypes, no compiler)."""
  if request.param == "kernel" and not kernels.available():
    pytest.skip("the CPU kernel could not be built here (no C++ compiler)")
  if request.param == "xla":
    monkeypatch.setattr(fused, "_use_kernel", lambda *args: False)
  return request.param


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
  assert set(activations.DEFAULT) | set(implementation.MEASURED_CANDIDATES) <= set(RULED)


@pytest.mark.parametrize("name", RULED)
@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_each_rule_matches_the_plain_sum_in_values_and_gradients(name, granularity, impl):
  names = [name, "relu"] if name != "relu" else ["relu", "identity"]
  out = _both(names, (8, 6, 25), granularity)
  (y_r, dx_r, dw_r), (y_f, dx_f, dw_f) = out["ref"], out["fused"]
  _close(y_f, y_r, 1.0)
  _close(dx_f, dx_r, 1.0)
  _close(dw_f, dw_r, float(np.abs(np.asarray(dw_r)).sum()) + 1.0)  # sums over 1200 terms


@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_all_rules_together_match_the_plain_sum(granularity, impl):
  out = _both(RULED, (64, 40), granularity)
  for a, b in zip(out["fused"], out["ref"]):
    _close(a, b, float(np.abs(np.asarray(b)).sum()) + 1.0)


def test_blocked_backward_matches_the_dense_one(monkeypatch):
  monkeypatch.setattr(fused, "_use_kernel", lambda *args: False)  # blocks are XLA's
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


@pytest.mark.parametrize("inner", ["x", "x_and_w"])
@pytest.mark.parametrize("blocks", [1, 3])
def test_second_derivatives_through_the_fused_rule_match_the_plain_sum(inner, blocks, impl,
                                                                       monkeypatch):
  # inner="x": the weight step's backward rule (dL/dx alone), as the exact second-order
  # hypergradient differentiates it; inner="x_and_w": the full backward rule.
  names = ("relu", "tanh", "sin", "gaussian", "softplus", "gelu", "elu", "silu", "sigmoid")
  cands = activations.resolve(list(names))
  x = jnp.resize(X, (12, 10))
  monkeypatch.setattr(fused, "BLOCK_ELEMENTS", 12 * 10 // blocks)
  assert fused._block_rows(12, 10) == 12 // blocks
  w0 = jax.nn.softmax(jax.random.normal(jax.random.key(3), (len(names),)))

  def hess(f):  # d/d(x, w) of a function of the gradient: reverse over reverse
    def inner_fn(x, w):
      loss = lambda x, w: jnp.sum(jnp.sin(f(x, w)))
      if inner == "x":
        return jnp.sum(jax.grad(loss)(x, w) ** 2)
      dx, dw = jax.grad(loss, argnums=(0, 1))(x, w)
      return jnp.sum(dx ** 2) + jnp.sum(jnp.cos(dw))
    return jax.grad(inner_fn, argnums=(0, 1))(x, w0)
  ref = hess(lambda x, w: mix_reference(x, w, cands, {}))
  fus = hess(lambda x, w: fused.mix(x, w, names))
  for a, b in zip(fus, ref):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def _second_order_step_temp_mib(candidates):
  cfg = configs.base_config()
  rngs = nnx.Rngs(0)
  slot = models.search_slots(candidates, "softmax", "layer", rngs, use_fused=True)
  model = models.build(ml_collections.ConfigDict({"name": "mlp", "widths": [512, 512]}), (32,),
                       10, slot, rngs)
  graphdef, *_ = network.split_model(model)
  schedule = optim.weight_schedule(cfg.optim.weights, 100)
  tx_w = optim.weight_optimizer(cfg.optim.weights, schedule)
  tx_a = optim.arch_optimizer(cfg.optim.arch)
  _, state = bilevel.init_state(model, tx_w, tx_a, 0)
  batch = {"x": jnp.zeros((512, 32)), "y": jnp.zeros((512,), jnp.int32)}
  step = bilevel.StepFn(objective.Objective(graphdef, "classification"), tx_w, tx_a, schedule,
                        order="second")
  compiled = jax.jit(step, donate_argnums=(0,)).lower(state, batch, batch).compile()
  return compiled.memory_analysis().temp_size_in_bytes / 2 ** 20


def test_exact_second_order_step_keeps_no_tensor_per_candidate():
  # Differentiating the train gradient again must keep each slot's inputs, not the K slopes
  # and curvatures that plain autodiff of the rules would keep (1 MiB each per slot here).
  two = _second_order_step_temp_mib(["relu", "tanh"])
  eight = _second_order_step_temp_mib(["relu", "tanh", "sigmoid", "sin", "gelu", "silu", "elu",
                                       "softplus"])
  assert eight - two < 3.0, (two, eight)  # 6 more candidates x 2 slots x 1 MiB = 12 MiB


def test_sincos_matches_numpy_over_a_wide_range():
  x = np.linspace(-1000, 1000, 200001, dtype=np.float32)
  s, c = fused.sincos(jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(s), np.sin(x.astype(np.float64)), atol=3e-6)
  np.testing.assert_allclose(np.asarray(c), np.cos(x.astype(np.float64)), atol=3e-6)


def test_searches_use_the_fused_path_by_default():
  slot = MixedActivation(list(activations.DEFAULT), channels=4, rngs=nnx.Rngs(0))
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
