"""The Vision Transformer backbone: its size, its slots, dropout and modes, a search."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

import actsearch
from actsearch import configs, models, usercode
from actsearch.errors import UserError
from actsearch.models import network

SMALL = {"name": "vit", "patch": 4, "dim": 8, "depth": 1, "heads": 2, "mlp_dim": 16,
         "dropout": 0.1}


def _build(shape=(8, 8, 1), **over):
  cfg = ml_collections.ConfigDict({**SMALL, **over})
  return models.build(cfg, shape, 10, models.uniform_slots("gelu"), network.rngs(0))


@pytest.mark.slow
def test_vit_tiny_has_its_size():
  # ViT-Ti on 32x32x3 with 4x4 patches: embedding 9,408, class token 192, positions 65 x 192,
  # 12 blocks of 444,864 (norms 768, attention 148,224, MLP 295,872), norm 384, head 1,930
  cfg = ml_collections.ConfigDict({"name": "vit"})
  model = models.build(cfg, (32, 32, 3), 10, models.uniform_slots("gelu"), network.rngs(0))
  assert sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))) == 5_362_762
  assert len(models.slots(model)) == 12


def test_a_vit_has_one_slot_per_mlp_and_its_modes_set_by_the_engine():
  model = _build(depth=2)
  assert [n for n, _ in models.slots(model)] == ["block0/mlp/act", "block1/mlp/act"]
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
  graphdef, params, arch, rest = network.split_model(model)
  run = lambda train, draw: network.merge(graphdef, params, arch, rest, train=train,  # noqa
                                          draw=(draw,))(x)
  assert run(False, 0).shape == (3, 10)
  np.testing.assert_array_equal(run(False, 0), run(False, 1))       # eval: no dropout
  assert not np.allclose(run(True, 0), run(True, 1))                # train: masks by draw


@pytest.mark.parametrize("over, needle", [
    ({"patch": 3}, "model.patch 3 does not divide the 8x8 images"),
    ({"heads": 3}, "model.dim 8 is not divisible by model.heads 3"),
    ({"depth": 0}, "model.depth must be a positive integer"),
    ({"dropout": 1.0}, "model.dropout must lie in [0, 1)"),
])
def test_a_bad_vit_config_is_one_user_error(over, needle):
  with pytest.raises(UserError, match=needle.replace("[", r"\[").replace(")", r"\)")):
    _build(**over)


def test_a_vit_with_dropout_searches_and_retrains_from_python(tmp_path):
  cfg = usercode.load_config("experiments/digits_cnn2d.py")
  cfg.model = ml_collections.ConfigDict(SMALL)
  configs.apply_overrides(cfg, ['search.candidates=["relu","gelu"]', "search.race.epochs=[1]",
                                "search.race.keep=[]", "retrain.epochs=1",
                                "retrain.baselines=[]"])
  record = actsearch.search(cfg, str(tmp_path / "run"))
  assert [layer["name"] for layer in record["layers"]] == ["block0/mlp/act"]
  actsearch.retrain(str(tmp_path / "run" / "architecture.json"), str(tmp_path / "retrain"),
                    seeds=1)
  model = actsearch.trained(str(tmp_path / "retrain"))
  x = jnp.zeros((2, 8, 8, 1))
  np.testing.assert_array_equal(model(x), model(x))  # returned in eval mode: no dropout
