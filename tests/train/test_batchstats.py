"""Batch norm's running averages recalibrated for a pinned network (``train/batchstats.py``), and
a batch statistic that is not finite caught as a non-finite step (``train/health.py``)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from actsearch import data
from actsearch.models import network
from actsearch.train import batchstats, health
from actsearch.train.step import TrainState


class Net(nnx.Module):
  def __init__(self, rngs):
    self.dense = nnx.Linear(3, 4, rngs=rngs)
    self.bn = nnx.BatchNorm(4, rngs=rngs)
    self.dropout = nnx.Dropout(0.5, rngs=rngs)

  def __call__(self, x, key=None, *, train=True):
    return self.dropout(self.bn(self.dense(x)))


def test_recalibration_sets_the_mean_of_the_batches_statistics():
  graphdef, params, arch, rest = network.split_model(Net(network.rngs(0)))
  x = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32) * 2 + 3
  out = batchstats.recalibrate(graphdef, params, arch, rest, x, batch_size=16, seed=4,
                               batches=3)
  h = x @ np.asarray(params["dense"]["kernel"][...]) + np.asarray(params["dense"]["bias"][...])
  order = data.epoch_order(100, 16, 4, 0)[:3]
  want_mean = np.mean([h[i].mean(0) for i in order], axis=0)
  want_var = np.mean([h[i].var(0) for i in order], axis=0)
  np.testing.assert_allclose(out["bn"]["mean"][...], want_mean, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out["bn"]["var"][...], want_var, rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(out["dropout"]), jax.tree.leaves(rest["dropout"])):
    np.testing.assert_array_equal(a, b)  # the streams as stored


def test_a_network_without_batch_norm_is_returned_as_it_is():
  graphdef, params, arch, rest = network.split_model(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
  assert batchstats.recalibrate(graphdef, params, arch, rest, np.zeros((8, 3)), 4, 0) is rest


def test_a_non_finite_batch_statistic_fails_the_step():
  _, params, arch, rest = network.split_model(Net(network.rngs(0)))
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, arch=arch, rest=rest, opt=None)

  def step(st, overflow):
    rest = jax.tree.map(lambda v: v * jnp.where(overflow, jnp.inf, 1.0)
                        if jnp.issubdtype(v.dtype, jnp.floating) else v, st.rest)
    return st.replace(step=st.step + 1, rest=rest), {"train/loss": jnp.float32(0.5)}
  for policy in health.POLICIES:
    guarded = jax.jit(health.guard(step, policy))
    _, ok = guarded(state, False)
    new, bad = guarded(state, True)
    assert float(ok[health.SKIPPED]) == 0 and float(bad[health.SKIPPED]) == 1
    if policy == "skip":  # the statistics stay as they were
      np.testing.assert_array_equal(new.rest["bn"]["var"][...], rest["bn"]["var"][...])
