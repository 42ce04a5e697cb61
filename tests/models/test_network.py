"""A model as the engine runs it (``models/network.py``): the streams it is built with, its split
into plain arrays, its mode set for every pass whichever way the model takes it, dropout
reseeded by the draw, batch norm's statistics kept across a call under ``jax.grad``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import actsearch
from actsearch.models import network, user
from actsearch.train import checkpoint
from actsearch.train.objective import Objective, Pass


class BySwitch(nnx.Module):
  """Mode from the layers' attributes (Flax's ``model.train()`` / ``model.eval()``)."""

  def __init__(self, *, rngs):
    self.linear = nnx.Linear(3, 8, rngs=rngs)
    self.bn = nnx.BatchNorm(8, rngs=rngs)
    self.dropout = nnx.Dropout(0.5, rngs=rngs)
    self.head = nnx.Linear(8, 2, rngs=rngs)

  def __call__(self, x):
    return self.head(self.dropout(actsearch.slot(self, "act", "relu")(self.bn(self.linear(x)))))


class ByArgument(BySwitch):
  """The same layers, the mode passed down (``train`` without a default)."""

  def __call__(self, x, train):
    h = self.bn(self.linear(x), use_running_average=not train)
    return self.head(self.dropout(actsearch.slot(self, "act", "relu")(h),
                                  deterministic=not train))


def _objective(kind, arrive_in=None):
  model = kind(rngs=network.rngs(0))
  if arrive_in is not None:  # the mode the user left the model in changes nothing
    network.set_mode(model, arrive_in)
  graphdef, params, arch, rest = network.split_model(user.Backbone(model))
  return Objective(graphdef, "classification"), params, arch, rest


X = jax.random.normal(jax.random.key(1), (16, 3)) * 3 + 1


def test_the_params_stream_is_the_seed_so_weights_start_as_before():
  a = nnx.Linear(3, 4, rngs=nnx.Rngs(params=7))
  b = nnx.Linear(3, 4, rngs=network.rngs(7))
  np.testing.assert_array_equal(a.kernel[...], b.kernel[...])
  keys = {n: np.asarray(jax.random.key_data(network.stream_key(7, n))) for n in network.STREAMS}
  assert len({k.tobytes() for k in keys.values()}) == 3  # three different streams


def test_the_state_is_plain_arrays_that_a_checkpoint_packs():
  obj, params, arch, rest = _objective(BySwitch)
  assert network.has_streams(rest) and network.has_batch_stats(rest)
  for leaf in jax.tree.leaves((params, arch, rest)):
    assert not jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
  packed, layout = checkpoint.pack(rest)
  back = checkpoint.unpack(packed, layout, rest)
  for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(rest)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kind", [BySwitch, ByArgument])
@pytest.mark.parametrize("arrive_in", [None, True, False])
def test_train_and_eval_mode_whatever_mode_the_model_arrives_in(kind, arrive_in):
  obj, params, arch, rest = _objective(kind, arrive_in)
  step = jax.jit(lambda r, draw: obj.apply(params, arch, r, X, Pass(draw=draw), train=True))
  (out1, rest1), (out2, _) = step(rest, jnp.uint32([0])), step(rest, jnp.uint32([1]))
  # train mode: dropout on (two draws differ), the running averages move toward the batch's
  assert not np.allclose(out1, out2)
  mean = dict(nnx.to_flat_state(rest1))[("model", "bn", "mean")][...]
  batch_mean = (X @ params["model"]["linear"]["kernel"][...]
                + params["model"]["linear"]["bias"][...]).mean(0)
  np.testing.assert_allclose(mean, 0.01 * batch_mean, rtol=1e-4, atol=1e-6)
  # the same draw, the same masks; the streams come back as they were stored
  np.testing.assert_array_equal(out1, step(rest, jnp.uint32([0]))[0])
  for a, b in zip(jax.tree.leaves(rest1), jax.tree.leaves(rest)):
    if a.dtype == jnp.uint32:
      np.testing.assert_array_equal(a, b)
  # eval mode: no dropout, the running averages (a plain forward pass with them)
  out, after = jax.jit(lambda r: obj.apply(params, arch, r, X, None, train=False))(rest1)
  model = nnx.merge(obj.graphdef, params, arch, rest1).model
  bn = model.bn
  h = (X @ model.linear.kernel[...] + model.linear.bias[...] - bn.mean[...]) / jnp.sqrt(
      bn.var[...] + bn.epsilon) * bn.scale[...] + bn.bias[...]
  want = jax.nn.relu(h) @ model.head.kernel[...] + model.head.bias[...]
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(rest1)):
    np.testing.assert_array_equal(a, b)  # evaluation changes no state


def test_batch_statistics_update_under_grad_inside_jit():
  """The first-step failure of issue 35: a batch statistic updated under ``jax.grad`` while the
  model was merged from variables of the outer trace (``TraceContextError``)."""
  obj, params, arch, rest = _objective(BySwitch)
  batch = {"x": X, "y": jnp.arange(16) % 2}
  grad = jax.jit(lambda p, r: jax.grad(obj, has_aux=True)(p, arch, r, batch,
                                                         Pass(draw=jnp.uint32([3]))))
  g, (metrics, new_rest) = grad(params, rest)
  assert np.isfinite(float(metrics["loss"]))
  assert jax.tree.structure(new_rest) == jax.tree.structure(rest)
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new_rest),
                                                     jax.tree.leaves(rest))]
  assert sum(moved) == 2  # the running mean and variance, nothing else


def test_find_traces_a_call_whose_train_argument_has_no_default_in_eval_mode():
  model = ByArgument(rngs=network.rngs(0))
  network.set_mode(model, True)
  places = user.find(model, jnp.ones((2, 3)))
  assert [p.name for p in places] == ["act"]
  assert model.bn.use_running_average is False  # the user's model keeps its mode


def test_batch_norm_paths_and_sync():
  model = user.Backbone(BySwitch(rngs=network.rngs(0)))
  assert network.batch_norm_paths(model) == {("model", "bn")}
  network.sync_batch_norm(model, "data")
  assert model.model.bn.axis_name == "data"
