"""Losses by name (train/losses.py): the built-in two against their formulas, a user's own
through the objective and a search, bad input."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from actsearch import architecture, checks, cli, configs
from actsearch.errors import USER_CODE, UserError
from actsearch.models.network import split_model
from actsearch.train import losses
from actsearch.train.objective import Objective

from conftest import ROOT

TRACED = []  # the batches' shapes this module's loss saw while being traced


@losses.register("test_doubled_cross_entropy")
def doubled(out, y):
  TRACED.append(out.shape)
  return 2.0 * losses.cross_entropy(out, y)


@losses.register("test_mean_only")
def mean_only(out, y):  # a common mistake: the batch's mean, not one loss per example
  return jnp.mean(losses.cross_entropy(out, y))


@losses.register("test_broken")
def broken(out, y):
  raise KeyError("a bug of the user's")


OUT = jax.random.normal(jax.random.key(0), (6, 3))
LABELS = {"cross_entropy": jnp.array([0, 2, 1, 1, 0, 2]),
          "squared_error": jax.random.normal(jax.random.key(1), (6, 3))}


def _reference(name, out, y):
  out, y = np.asarray(out, np.float64), np.asarray(y)
  if name == "cross_entropy":
    logz = np.log(np.exp(out).sum(-1))
    return logz - out[np.arange(len(y)), y]
  return ((out - y) ** 2).mean(-1)


@pytest.mark.parametrize("name", sorted(losses.BUILTIN))
def test_each_builtin_loss_is_its_formula_per_example(name):
  got = losses.per_example(name, "classification", OUT, LABELS[name])
  np.testing.assert_allclose(np.asarray(got), _reference(name, OUT, LABELS[name]), rtol=1e-5)


@pytest.mark.parametrize("task, name", sorted(losses.BY_TASK.items()))
def test_auto_is_the_tasks_own_loss(task, name):
  y = LABELS[name]
  np.testing.assert_array_equal(np.asarray(losses.per_example("auto", task, OUT, y)),
                                np.asarray(losses.BUILTIN[name](OUT, y)))


def test_a_users_loss_is_what_the_objective_minimises_and_accuracy_is_still_reported():
  class Net(nnx.Module):
    def __init__(self):
      self.lin = nnx.Linear(4, 3, rngs=nnx.Rngs(0))

    def __call__(self, x, key=None, train=True):
      return self.lin(x)
  graphdef, params, arch, rest = split_model(Net())
  batch = {"x": jax.random.normal(jax.random.key(2), (6, 4)), "y": LABELS["cross_entropy"]}
  plain, (m_plain, _) = Objective(graphdef, "classification")(params, arch, rest, batch)
  mine, (m_mine, _) = Objective(graphdef, "classification", "test_doubled_cross_entropy")(
      params, arch, rest, batch)
  assert float(mine) == pytest.approx(2 * float(plain), rel=1e-6)
  assert float(m_mine["accuracy"]) == float(m_plain["accuracy"])
  grads = jax.grad(lambda p: Objective(graphdef, "classification",
                                       "test_doubled_cross_entropy")(p, arch, rest, batch)[0])
  g_plain = jax.grad(lambda p: Objective(graphdef, "classification")(p, arch, rest, batch)[0])
  for a, b in zip(jax.tree.leaves(grads(params)), jax.tree.leaves(g_plain(params))):
    np.testing.assert_allclose(np.asarray(a), 2 * np.asarray(b), rtol=1e-5, atol=1e-7)


def test_a_search_trains_with_the_configured_loss_and_records_it_with_its_code(tmp_path):
  TRACED.clear()
  workdir = tmp_path / "run"
  assert cli.main(["search", "--config", os.path.join(ROOT, "experiments/mnist1d_mlp.py"),
                   "--workdir", str(workdir), "--set", "search.strategy=darts",
                   "--set", "data.num_samples=400",
                   "--set", "data.num_test=0", "--set", "model.widths=[8]",
                   "--set", "search.batch_size=50", "--set", "search.epochs=1",
                   "--set", 'search.candidates=["relu","gelu"]',
                   "--set", "search.discretize=argmax",
                   "--set", "data.loss=test_doubled_cross_entropy", "--no-progress"]) == 0
  assert TRACED  # traced into the compiled step (the weights' and alpha's passes)
  arch = architecture.load(str(workdir / "architecture.json"))
  assert arch["data"]["loss"] == "test_doubled_cross_entropy"
  assert arch["code"] == [__name__]  # registered by this module: recorded by reference


@pytest.mark.parametrize("name, needle", [
    ("test_mean_only", "returned shape (); it must return one loss per example, shape (6,)"),
    ("cross_entropyy", "unknown loss 'cross_entropyy'"),
])
def test_a_loss_of_the_wrong_shape_or_name_is_one_user_error(name, needle):
  with pytest.raises(UserError) as err:
    losses.per_example(name, "classification", OUT, LABELS["cross_entropy"])
  assert needle in str(err.value) and "\n" not in str(err.value)


def test_an_exception_in_a_users_loss_is_marked_as_theirs():
  with pytest.raises(KeyError) as err:
    losses.per_example("test_broken", "classification", OUT, LABELS["cross_entropy"])
  assert getattr(err.value, USER_CODE) == "loss 'test_broken'"


@pytest.mark.parametrize("name", ["auto", "cross_entropy", "", 3])
def test_a_loss_cannot_take_a_reserved_name(name):
  with pytest.raises(UserError, match="a loss needs a new name"):
    losses.register(name)


def test_an_unknown_configured_loss_and_a_records_unregistered_one_name_the_fix():
  cfg = configs.base_config()
  cfg.data.loss = "huberr"
  with pytest.raises(UserError, match="unknown loss 'huberr'"):
    checks.check(cfg)
  record = {"data": {"loss": "their_loss"}, "code": ["/home/me/losses.py"],
            "model": {"name": "mlp"}, "layers": [{"name": "block0/act", "choice": "relu"}]}
  with pytest.raises(UserError) as err:
    architecture.require(record, "architecture.json")
  assert ("loss 'their_loss' is not registered here" in str(err.value)
          and "pass --import /home/me/losses.py" in str(err.value))
