"""Hypergradients: the exact second order against finite differences, DARTS' approximation
against the exact one, and one search step of each order."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from actsearch import models
from actsearch.models import network, taps
from actsearch.strategies import bilevel
from actsearch.train import objective, optim

CANDS = ["relu", "tanh", "sin", "gaussian", "silu", "prelu"]  # prelu: the general path
FUSED = ["relu", "tanh", "sin", "gaussian", "silu", "softplus"]  # all fused: custom VJP


def _problem(task="classification", relaxation="softmax", dtype=jnp.float64, cands=CANDS,
             model_cfg=None):
  rngs = nnx.Rngs(0)
  cfg = ml_collections.ConfigDict(model_cfg or {"name": "mlp", "widths": [6, 5]})
  slot = models.search_slots(cands, relaxation, "layer", rngs)
  n_out = 3 if task == "classification" else 2
  in_len = 12 if cfg.name == "cnn1d" else 4
  model = models.build(cfg, (in_len,), n_out, slot, rngs)
  graphdef, params, arch, rest = network.split_model(model)
  cast = lambda t: jax.tree.map(lambda v: v.astype(dtype), t)
  params, arch = cast(params), cast(arch)
  arch = jax.tree.map(lambda a: a + jax.random.normal(jax.random.key(5), a.shape, dtype), arch)
  k1, k2, k3, k4 = jax.random.split(jax.random.key(1), 4)
  if task == "classification":
    yt, yv = jax.random.randint(k2, (16,), 0, 3), jax.random.randint(k4, (16,), 0, 3)
  else:
    yt, yv = jax.random.normal(k2, (16, 2), dtype), jax.random.normal(k4, (16, 2), dtype)
  train = {"x": jax.random.normal(k1, (16, in_len), dtype), "y": yt}
  val = {"x": jax.random.normal(k3, (16, in_len), dtype), "y": yv}
  return objective.Objective(graphdef, task), params, arch, rest, train, val


def _hypergradient(obj, *args, order, xi):
  fn = jax.jit(lambda *a: bilevel.hypergradient(obj, *a, order=order, xi=xi)[0])
  return fn(*args)


def _flat(tree):
  return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize("task, cands", [
    ("classification", CANDS), pytest.param("regression", CANDS, marks=pytest.mark.slow),
    pytest.param("classification", FUSED, marks=pytest.mark.slow)])  # fused: the low-rank test
def test_exact_hypergradient_matches_finite_differences_of_the_unrolled_objective(task, cands):
  xi = 0.5  # large enough that the second-order term matters
  with jax.enable_x64(True):
    obj, params, arch, rest, train, val = _problem(task, cands=cands)
    exact = _hypergradient(obj, params, arch, rest, train, val, order="second", xi=xi)
    first = _hypergradient(obj, params, arch, rest, train, val, order="first", xi=xi)
    leaves, treedef = jax.tree.flatten(arch)
    unrolled = jax.jit(lambda a: bilevel.unrolled_val_loss(obj, params, a, rest, train, val, xi))
    fd = []
    h = 1e-5
    for i, leaf in enumerate(leaves):
      for j in range(leaf.size):
        bump = lambda s, i=i, j=j: jax.tree.unflatten(treedef, [
            leaf_.at[np.unravel_index(j, leaf_.shape)].add(s) if k == i else leaf_
            for k, leaf_ in enumerate(leaves)])
        up, down = unrolled(bump(h)), unrolled(bump(-h))
        fd.append(float((up - down) / (2 * h)))
  exact, fd, first = _flat(exact), np.array(fd), _flat(first)
  np.testing.assert_allclose(exact, fd, rtol=1e-4, atol=1e-4 * np.abs(fd).max())
  # The second-order term is not negligible here, so the test can tell the orders apart.
  assert np.abs(first - fd).max() > 1e-2 * np.abs(fd).max()


_ROUTES = [
    ({"name": "mlp", "widths": [6, 5]}, CANDS),  # V = X'^T Delta' formed; prelu's slopes too
    ({"name": "mlp", "widths": [64, 48]}, FUSED),  # the middle layer goes through Gram matrices
    ({"name": "cnn1d", "widths": [4, 3], "kernel_sizes": [3, 3]}, FUSED),  # convs: general
]


# The dense routes, one relaxation each, in the fast tier; the rest (convs too) in the slow one.
@pytest.mark.parametrize("model_cfg, cands, relaxation", [
    pytest.param(*route, relaxation, marks=() if fast else pytest.mark.slow,
                 id=f"{route[0]['name']}{route[0]['widths']}-{relaxation}")
    for i, route in enumerate(_ROUTES) for relaxation in ("softmax", "gumbel")
    for fast in [i < 2 and (relaxation == "gumbel") == (i == 1)]])
def test_lowrank_second_order_equals_the_general_route(model_cfg, cands, relaxation):
  keys = dict(key_train=jax.random.key(3), key_val=jax.random.key(4))
  with jax.enable_x64(True):
    obj, params, arch, rest, train, val = _problem(relaxation=relaxation, cands=cands,
                                                   model_cfg=model_cfg)
    assert bilevel._dense_layers(obj, params, arch, rest, (train, val),
                                 (keys["key_train"], keys["key_val"])) is not None

    def run(lowrank):
      fn = jax.jit(lambda *a: bilevel.hypergradient(obj, *a, order="second", xi=0.5,
                                                    lowrank=lowrank, **keys)[:2])
      return fn(params, arch, rest, train, val)
    (h_low, g_low), (h_gen, g_gen) = run(True), run(False)
  scale = np.abs(_flat(h_gen)).max()
  assert scale > 1e-6
  np.testing.assert_allclose(_flat(h_low), _flat(h_gen), rtol=1e-9, atol=1e-10 * scale)
  np.testing.assert_allclose(_flat(g_low), _flat(g_gen), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("b, b_val, n_in, n_out", [(16, 16, 4, 6), (16, 16, 64, 48),
                                                     (4, 8, 32, 32), (32, 8, 5, 7)])
def test_lowrank_cotangents_in_either_order_of_multiplication(b, b_val, n_in, n_out):
  r = np.random.default_rng(0)
  x, delta = r.normal(size=(b, n_in)), r.normal(size=(b, n_out))
  x_val, delta_val = r.normal(size=(b_val, n_in)), r.normal(size=(b_val, n_out))
  v = x_val.T @ delta_val
  x_bar, delta_bar = bilevel._lowrank_cotangents(x, delta, x_val, delta_val)
  np.testing.assert_allclose(x_bar, delta @ v.T, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(delta_bar, x @ v, rtol=1e-10, atol=1e-10)


class _DenseTwice(nnx.Module):
  def __init__(self, rngs):
    self.dense = taps.Dense(4, 4, rngs=rngs)

  def __call__(self, x, key=None, *, train=True):
    return self.dense(self.dense(x))


def test_lowrank_route_applies_to_dense_layers_called_once():
  obj, params, arch, rest, train, val = _problem(dtype=jnp.float32)
  layers = bilevel._dense_layers(obj, params, arch, rest, (train, val), (None, None))
  assert set(layers[0]) == {("layers", 0), ("layers", 1), ("head",)}
  graphdef, params, arch, rest = network.split_model(_DenseTwice(nnx.Rngs(0)))
  obj = objective.Objective(graphdef, "classification")
  assert bilevel._dense_layers(obj, params, arch, rest, (train, val), (None, None)) is None


def test_darts_finite_difference_approximation_is_close_to_the_exact_hypergradient():
  with jax.enable_x64(True):
    obj, params, arch, rest, train, val = _problem()
    kw = dict(order="second", xi=0.5)
    exact = _flat(_hypergradient(obj, params, arch, rest, train, val, **kw))
    kw["order"] = "second_fd"
    approx = _flat(_hypergradient(obj, params, arch, rest, train, val, **kw))
  cos = exact @ approx / np.linalg.norm(exact) / np.linalg.norm(approx)
  assert cos > 0.999
  np.testing.assert_allclose(approx, exact, atol=2e-2 * np.abs(exact).max())


@pytest.mark.parametrize("order", bilevel.ORDERS)
@pytest.mark.parametrize("relaxation", ["softmax", "gumbel"])
def test_one_search_step_of_each_order_updates_weights_and_alpha(order, relaxation):
  obj, params, arch, rest, train, val = _problem(relaxation=relaxation, dtype=jnp.float32)
  wcfg = ml_collections.ConfigDict({"optimizer": "sgd", "lr": 0.1, "lr_min": 0.01,
                                    "momentum": 0.9, "weight_decay": 3e-4, "grad_clip": 5.0})
  acfg = ml_collections.ConfigDict({"lr": 0.01, "b1": 0.5, "b2": 0.999, "weight_decay": 1e-3})
  schedule = optim.weight_schedule(wcfg, 10)
  tx_w, tx_a = optim.weight_optimizer(wcfg, schedule), optim.arch_optimizer(acfg)
  state = bilevel.SearchState(step=jnp.zeros((), jnp.int32), params=params, arch=arch, rest=rest,
                              opt_w=tx_w.init(params), opt_a=tx_a.init(arch),
                              rng=jax.random.key_data(jax.random.key(0)))
  step = jax.jit(bilevel.StepFn(obj, tx_w, tx_a, schedule, order=order,
                                stochastic=relaxation == "gumbel"))
  new, metrics = step(state, train, val)
  assert int(new.step) == 1
  assert np.isfinite(float(metrics["train/loss"])) and np.isfinite(float(metrics["val_batch/loss"]))
  assert np.abs(_flat(new.arch) - _flat(arch)).max() > 1e-4
  assert np.abs(_flat(new.params) - _flat(params)).max() > 1e-4


def test_warmup_freezes_alpha_and_its_optimizer():
  obj, params, arch, rest, train, val = _problem(dtype=jnp.float32)
  wcfg = ml_collections.ConfigDict({"optimizer": "sgd", "lr": 0.1, "lr_min": 0.01,
                                    "momentum": 0.9, "weight_decay": 0.0, "grad_clip": 5.0})
  acfg = ml_collections.ConfigDict({"lr": 0.01, "b1": 0.5, "b2": 0.999, "weight_decay": 0.0})
  schedule = optim.weight_schedule(wcfg, 10)
  tx_w, tx_a = optim.weight_optimizer(wcfg, schedule), optim.arch_optimizer(acfg)
  state = bilevel.SearchState(step=jnp.zeros((), jnp.int32), params=params, arch=arch, rest=rest,
                              opt_w=tx_w.init(params), opt_a=tx_a.init(arch),
                              rng=jax.random.key_data(jax.random.key(0)))
  step = jax.jit(bilevel.StepFn(obj, tx_w, tx_a, schedule, warmup_steps=1))
  s1, _ = step(state, train, val)
  np.testing.assert_array_equal(_flat(s1.arch), _flat(arch))
  s2, _ = step(s1, train, val)
  assert np.abs(_flat(s2.arch) - _flat(arch)).max() > 1e-4


class _NormMLP(nnx.Module):
  """Dense layers (taps: the low-rank route applies), batch norm, mixed slots."""

  def __init__(self, slot, rngs):
    self.layers = nnx.List([taps.Dense(4, 6, rngs=rngs), taps.Dense(6, 5, rngs=rngs)])
    self.norms = nnx.List([nnx.BatchNorm(6, rngs=rngs), nnx.BatchNorm(5, rngs=rngs)])
    self.acts = nnx.List([slot(models.slot_name(i), w) for i, w in enumerate((6, 5))])
    self.head = taps.Dense(5, 3, rngs=rngs)

  def __call__(self, x, key=None, *, train=True):
    for i, (layer, norm, act) in enumerate(zip(self.layers, self.norms, self.acts)):
      x = act(norm(layer(x)), None if key is None else jax.random.fold_in(key, i))
    return self.head(x)


def test_the_second_orders_routes_agree_on_a_batch_norm_model():
  with jax.enable_x64(True):
    _, _, _, _, train, val = _problem()
    rngs = nnx.Rngs(0)
    model = _NormMLP(models.search_slots(CANDS, "softmax", "layer", rngs), rngs)
    graphdef, params, arch, rest = network.split_model(model)
    params, rest = jax.tree.map(lambda v: v.astype(jnp.float64), (params, rest))
    arch = jax.tree.map(lambda a: a + jax.random.normal(jax.random.key(5), a.shape, a.dtype),
                        arch)
    obj = objective.Objective(graphdef, "classification")
    assert bilevel._dense_layers(obj, params, arch, rest, (train, val), (None, None))

    def run(lowrank):
      return jax.jit(lambda *a: bilevel.hypergradient(obj, *a, order="second", xi=0.5,
                                                      lowrank=lowrank))(
          params, arch, rest, train, val)
    low, gen = run(True), run(False)
  scale = np.abs(_flat(gen[0])).max()
  assert scale > 1e-6
  np.testing.assert_allclose(_flat(low[0]), _flat(gen[0]), rtol=1e-9, atol=1e-10 * scale)
  np.testing.assert_allclose(_flat(low[1]), _flat(gen[1]), rtol=1e-9, atol=1e-12)
  # both keep the train pass's batch statistics: the running averages moved alike
  np.testing.assert_allclose(_flat(low[4]), _flat(gen[4]), rtol=1e-12, atol=0)
  assert np.abs(_flat(low[4]) - _flat(rest)).max() > 1e-4
