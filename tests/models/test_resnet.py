"""The CIFAR ResNet backbone (He et al. 2016): its shape, its shortcut, its slots, a search."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from actsearch import models
from actsearch.errors import UserError
from actsearch.models import network, resnet

from conftest import assert_bad_input


def _build(depth, widths=(16, 32, 64), shape=(32, 32, 3), slot=None):
  cfg = ml_collections.ConfigDict({"name": "resnet", "depth": depth, "widths": list(widths)})
  return models.build(cfg, shape, 10, slot or models.uniform_slots("relu"), network.rngs(0))


@pytest.mark.parametrize("depth, params", [
    pytest.param(20, 269_722, marks=pytest.mark.slow),   # the paper's 0.27M
    (8, 75_290),     # one block per stage: what the tests search
])
def test_a_resnet_has_the_papers_size_and_two_slots_per_block(depth, params):
  model = _build(depth)
  n = (depth - 2) // 6
  names = [name for name, _ in models.slots(model)]
  assert len(names) == 1 + 2 * 3 * n and "stem/act" in names
  assert f"stage3/block{n}/act2" in names
  assert sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))) == params
  assert model(jnp.zeros((2, 32, 32, 3))).shape == (2, 10)


def test_the_shortcut_is_option_a():
  block = resnet.BasicBlock(4, 8, 2, "b", models.uniform_slots("relu"), rngs=network.rngs(0))
  x = jax.random.normal(jax.random.key(0), (1, 6, 6, 4))
  y = block.shortcut(x)
  assert y.shape == (1, 3, 3, 8)
  np.testing.assert_array_equal(y[..., 2:6], x[:, ::2, ::2, :])
  assert not np.any(y[..., :2]) and not np.any(y[..., 6:])


@pytest.mark.parametrize("depth, widths, needle", [
    (21, [16, 32, 64], "model.depth must be 6n + 2"),
    (2, [16, 32, 64], "model.depth must be 6n + 2"),
    (20, [16, 32], "three stages' channels"),
])
def test_a_bad_resnet_config_is_one_user_error(depth, widths, needle):
  with pytest.raises(UserError, match=needle.replace("+", r"\+")):
    _build(depth, widths)


def test_a_resnet_searches_and_retrains_on_digits_images(tmp_path, in_process):
  sets = ["model.widths=[4,8,8]", "search.epochs=1",
          'search.candidates=["relu","gelu"]', "search.strategy=darts",
          "search.discretize=argmax", "retrain.epochs=1", "retrain.baselines=[]"]
  args = [a for s in sets for a in ("--set", s)]
  proc = in_process("search", "--config", "experiments/digits_resnet.py", "--workdir",
                    tmp_path / "run", "--no-progress", *args)
  assert proc.returncode == 0, proc.stderr
  proc = in_process("retrain", tmp_path / "run" / "architecture.json", "--workdir",
                    tmp_path / "retrain", "--seeds", "1", "--no-progress")
  assert proc.returncode == 0, proc.stderr
  bad = in_process("search", "--config", "experiments/digits_resnet.py", "--workdir",
                   tmp_path / "flat", "--no-progress", *args, "--set", "data.images=false")
  assert_bad_input(bad, "resnet needs images of shape [height, width]")
