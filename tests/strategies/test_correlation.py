"""The correlation rule: Pearson r of each slot's input and output against a hand computation,
on a dense and a convolutional slot, and the two forms' updates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from ml_collections import ConfigDict

from actsearch import models
from actsearch.errors import UserError
from actsearch.strategies import correlation
from actsearch.train import trainer


def by_hand(x, y):
  """Mean over units of numpy's Pearson r over every other axis; a constant unit counts 0."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
  rs = [0.0 if x[:, u].std() == 0 or y[:, u].std() == 0 else np.corrcoef(x[:, u], y[:, u])[0, 1]
        for u in range(x.shape[-1])]
  return float(np.mean(rs))


def test_pearson_is_the_mean_over_units_and_a_constant_unit_counts_zero():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50, 4)).astype(np.float32)
  y = np.stack([x[:, 0] * 2 + 1, -x[:, 1], np.tanh(x[:, 2]), np.zeros(50)], -1)
  assert float(correlation.pearson(x, y)) == pytest.approx(by_hand(x, y), abs=1e-5)
  assert float(correlation.pearson(x, y)) == pytest.approx((1 - 1 + by_hand(x[:, 2:3],
                                                           np.tanh(x[:, 2:3])) + 0) / 4, abs=1e-5)


def test_standard_normal_inputs_give_the_stated_r_of_relu_tanh_and_sigmoid():
  z = jax.random.normal(jax.random.key(0), (200_000, 1))
  r = {f: float(correlation.pearson(z, getattr(jax.nn, f)(z))) for f in ("relu", "sigmoid")}
  r["tanh"] = float(correlation.pearson(z, jnp.tanh(z)))
  assert r["relu"] == pytest.approx(0.86, abs=0.01)
  assert r["tanh"] == pytest.approx(0.96, abs=0.01)
  assert r["sigmoid"] == pytest.approx(0.99, abs=0.01)
  # so the switching form sends every slot to sigmoid, and sigmoid stays
  assert {correlation.switched(v) for v in r.values()} == {"sigmoid"}


def test_the_two_forms_update_as_stated():
  assert correlation.adjusted(0.25, 2.0, 0.4) == pytest.approx(1.05)
  assert correlation.adjusted(1.0, -1.0, 0.9) == pytest.approx(0.1)
  assert [correlation.switched(r) for r in (0.51, 0.5, -0.5, -0.51, 0.0)] == \
      ["sigmoid", "relu", "relu", "tanh", "relu"]
  assert correlation.switched(0.3, above=0.2, below=-0.9) == "sigmoid"
  assert correlation.moved_parameter("prelu") == ("slope", 0.25)
  assert correlation.moved_parameter("swish_beta") == ("beta", 1.0)
  with pytest.raises(UserError, match="one parameter"):
    correlation.moved_parameter("param_sigmoid")


def _model(name, widths, input_shape, slope, **keys):
  cfg = ConfigDict({"name": name, "widths": widths, **keys})
  layers = {models.slot_name(i): {"choice": "prelu", "params": {"prelu": {"slope": slope}}}
            for i in range(len(widths))}
  return models.build(cfg, input_shape, 3, models.fixed_slots(layers), nnx.Rngs(params=4))


def _engine_r(model, x):
  graphdef, state = trainer.stack_models([model])
  names = [n for n, _ in models.slots(model)]
  return correlation.correlations(graphdef, state, x, names)


def test_r_of_a_dense_slot_against_the_hand_computation():
  model = _model("mlp", [6, 5], (7,), slope=-0.6)  # a negative slope: r well below 1
  x = np.random.default_rng(1).normal(size=(64, 7)).astype(np.float32)
  got = _engine_r(model, x)
  z0 = np.asarray(model.layers[0](jnp.asarray(x)))
  h0 = np.where(z0 >= 0, z0, -0.6 * z0)
  z1 = np.asarray(model.layers[1](jnp.asarray(h0)))
  h1 = np.where(z1 >= 0, z1, -0.6 * z1)
  assert got["block0/act"] == pytest.approx(by_hand(z0, h0), abs=1e-5)
  assert got["block1/act"] == pytest.approx(by_hand(z1, h1), abs=1e-5)
  assert got["block0/act"] < 0.9
  # the parameter form's next slope from it
  assert correlation.adjusted(0.25, 1.0, got["block0/act"]) == pytest.approx(
      0.25 + by_hand(z0, h0), abs=1e-5)


def test_r_of_a_convolutional_slot_is_taken_over_batch_and_positions():
  model = _model("cnn1d", [4], (20,), slope=0.1, kernel_sizes=[5])
  x = np.random.default_rng(2).normal(size=(16, 20)).astype(np.float32)
  got = _engine_r(model, x)
  z = np.asarray(model.convs[0](jnp.asarray(x[..., None])))  # [16, L, 4]
  h = np.where(z >= 0, z, 0.1 * z)
  assert z.ndim == 3 and z.shape[-1] == 4
  assert got["block0/act"] == pytest.approx(by_hand(z, h), abs=1e-5)
  # not the same as pooling positions per example first
  assert by_hand(z, h) != pytest.approx(by_hand(z.mean(1), h.mean(1)), abs=1e-3)
