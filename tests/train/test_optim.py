"""The weight optimizer treats candidate activations' parameters apart (no decay by default,
an lr scale) and batch norm's scale and bias (no decay by default); with the keys unset (runs
recorded before them) every weight alike."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from actsearch.models import network
from actsearch.space.mixed import MixedActivation
from actsearch.train import optim


def _cfg(optimizer, **extra):
  return ml_collections.ConfigDict({"optimizer": optimizer, "lr": 0.1, "lr_min": 0.1,
                                    "momentum": 0.9, "weight_decay": 0.5, "grad_clip": 1e9,
                                    **extra})


class Net(nnx.Module):
  def __init__(self):
    self.dense = nnx.Linear(3, 3, rngs=nnx.Rngs(0))
    self.act = MixedActivation(["relu", "prelu"], channels=3, rngs=nnx.Rngs(1), name="a")


def _step(cfg):
  """One step from zero gradients: what moves is decay (and its lr scale) alone."""
  params = nnx.state(Net(), nnx.Param)
  tx = optim.weight_optimizer(cfg, optax.constant_schedule(cfg.lr))
  zeros = jax.tree.map(jnp.zeros_like, params)
  upd, _ = tx.update(zeros, tx.init(params), params)
  return params, upd


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_activation_parameters_are_not_decayed_by_default(optimizer):
  params, upd = _step(_cfg(optimizer, act_weight_decay=0.0, act_lr_scale=1.0))
  assert np.all(np.asarray(upd["act"]["p_prelu__slope"][...]) == 0)
  assert np.any(np.asarray(upd["dense"]["kernel"][...]) != 0)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_without_the_keys_every_weight_is_decayed_alike(optimizer):
  params, upd = _step(_cfg(optimizer, act_weight_decay=None))
  assert np.all(np.asarray(upd["act"]["p_prelu__slope"][...]) != 0)
  plain = ml_collections.ConfigDict(_cfg(optimizer).to_dict())
  _, same = _step(plain)  # no act_* keys at all: today's chain
  for a, b in zip(jax.tree.leaves(upd), jax.tree.leaves(same)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_lr_scale_and_decay_of_activation_parameters():
  _, one = _step(_cfg("sgd", act_weight_decay=0.2, act_lr_scale=1.0))
  _, three = _step(_cfg("sgd", act_weight_decay=0.2, act_lr_scale=3.0))
  slope1 = np.asarray(one["act"]["p_prelu__slope"][...])
  np.testing.assert_allclose(np.asarray(three["act"]["p_prelu__slope"][...]), 3 * slope1,
                             rtol=1e-6)
  np.testing.assert_allclose(slope1, -0.1 * 0.2 * 0.25, rtol=1e-6)  # -lr * decay * slope
  np.testing.assert_array_equal(np.asarray(one["dense"]["kernel"][...]),
                                np.asarray(three["dense"]["kernel"][...]))


def test_the_mask_finds_activation_parameters_by_path():
  params = nnx.state(Net(), nnx.Param)
  mask = optim.act_mask(params)
  flat = {"/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path): v
          for path, v in jax.tree_util.tree_flatten_with_path(mask)[0]}
  assert [k for k, v in flat.items() if v] == ["act/p_prelu__slope/value"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_an_act_lr_scale_of_zero_freezes_the_candidates_parameters(optimizer):
  # the correlation rule's parameter: decayed and scaled to exactly no update
  _, upd = _step(_cfg(optimizer, act_weight_decay=0.2, act_lr_scale=0.0))
  assert np.all(np.asarray(upd["act"]["p_prelu__slope"][...]) == 0)
  assert np.any(np.asarray(upd["dense"]["kernel"][...]) != 0)


class Normed(nnx.Module):
  def __init__(self):
    self.dense = nnx.Linear(3, 3, rngs=nnx.Rngs(0))
    self.bn = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
    self.ln = nnx.LayerNorm(3, rngs=nnx.Rngs(0))
    self.act = MixedActivation(["relu", "prelu"], channels=3, rngs=nnx.Rngs(1), name="a")


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("norm_decay, decayed", [(0.0, False), (None, True), (0.5, True)])
def test_batch_norm_scale_and_bias_are_decayed_apart(optimizer, norm_decay, decayed):
  model = Normed()
  params = nnx.state(model, nnx.Param)
  cfg = _cfg(optimizer, act_weight_decay=0.0, norm_weight_decay=norm_decay)
  tx = optim.weight_optimizer(cfg, optax.constant_schedule(cfg.lr),
                              network.batch_norm_paths(model))
  params = jax.tree.map(lambda v: v + 1.0, params)  # nonzero everywhere: decay shows
  upd, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  for name in ("scale", "bias"):
    assert np.any(np.asarray(upd["bn"][name][...]) != 0) == decayed, name
    assert np.all(np.asarray(upd["ln"][name][...]) != 0)  # layer norm: a weight as any other
  assert np.all(np.asarray(upd["dense"]["kernel"][...]) != 0)
  assert np.all(np.asarray(upd["act"]["p_prelu__slope"][...]) == 0)
