"""The public facade on a user's own Flax NNX model: slots, apply, imports without side effects."""

import difflib
import doctest
import inspect
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import actsearch
from actsearch.models import user

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "experiments"))
import own_model  # noqa: E402  (the example a user copies)


class Net(nnx.Module):
  """A user's model: a conv, a dense layer, blocks built in a loop, each slot marked inline."""

  def __init__(self, *, rngs):
    self.conv = nnx.Conv(1, 3, kernel_size=(3,), rngs=rngs)
    self.blocks = nnx.List([Block(6 if i == 0 else 4, 4, rngs) for i in range(2)])
    self.head = nnx.Linear(4, 2, rngs=rngs)

  def __call__(self, x):
    x = actsearch.slot(self, "conv", nnx.relu)(self.conv(x)).reshape(x.shape[0], -1)
    for block in self.blocks:
      x = block(x)
    return self.head(x)


class Block(nnx.Module):
  def __init__(self, din, dout, rngs):
    self.dense = nnx.Linear(din, dout, rngs=rngs)

  def __call__(self, x):
    return actsearch.slot(self, "act", "tanh")(self.dense(x))


X = jnp.asarray(np.random.default_rng(0).normal(size=(5, 2, 1)), jnp.float32)
NAMES = ["conv", "blocks/0/act", "blocks/1/act"]


def _record(layers, **extra):
  chosen = list(dict.fromkeys(layer["choice"] for layer in layers))
  return {"schema": "actsearch.architecture/v2", "candidates": chosen, "seed": 0,
          "relaxation": None, "granularity": None, "model": {}, "data": {}, "metrics": {},
          "layers": layers, **extra}


def _param(value):
  return {"shape": list(np.shape(value)), "value": np.asarray(value).tolist()}


def _reference(net, acts, x):
  """``net``'s forward pass written with plain jax.nn functions and its own weights."""
  def dense(layer, h):
    return h @ layer.kernel[...] + layer.bias[...]
  h = jax.lax.conv_general_dilated(x, net.conv.kernel[...], (1,), "SAME",
                                   dimension_numbers=("NWC", "WIO", "NWC")) + net.conv.bias[...]
  h = acts[0](h).reshape(x.shape[0], -1)
  for block, act in zip(net.blocks, acts[1:]):
    h = act(dense(block.dense, h))
  return dense(net.head, h)


def test_outside_a_search_the_slots_are_the_defaults_and_find_names_them_in_call_order():
  net = Net(rngs=nnx.Rngs(0))
  np.testing.assert_allclose(net(X), _reference(net, [jax.nn.relu, jnp.tanh, jnp.tanh], X),
                             rtol=1e-6, atol=1e-6)
  before = jax.tree.map(np.asarray, nnx.state(net))
  places = user.find(net, X)
  assert [p.name for p in places] == NAMES and [p.channels for p in places] == [3, 4, 4]
  after = jax.tree.map(np.asarray, nnx.state(net))
  assert jax.tree.all(jax.tree.map(np.array_equal, before, after))  # nothing computed on it


SLOPE, BETA = 0.3, np.array([0.5, 1.0, 1.5, 2.0], np.float32)
CASES = {
    "fixed": ([{"name": "conv", "choice": "gelu"}, {"name": "blocks/0/act", "choice": "sin"},
               {"name": "blocks/1/act", "choice": "elu"}],
              [lambda v: jax.nn.gelu(v, approximate=True), jnp.sin, jax.nn.elu], {}),
    "parametric": ([{"name": "conv", "choice": "prelu",
                     "params": {"prelu": {"slope": _param(SLOPE)}}},
                    {"name": "blocks/0/act", "choice": "swish_beta",
                     "params": {"swish_beta": {"beta": _param(BETA)}}},
                    {"name": "blocks/1/act", "choice": "relu"}],
                   [lambda v: jnp.where(v > 0, v, SLOPE * v),
                    lambda v: v * jax.nn.sigmoid(BETA * v), jax.nn.relu],
                   {"param_granularity": "channel"}),
}


@pytest.mark.parametrize("case", CASES)
def test_apply_fixes_each_slot_to_its_choice_as_plain_jax_computes_it(case):
  layers, acts, extra = CASES[case]
  net = actsearch.apply(_record(layers, **extra), Net(rngs=nnx.Rngs(1)), example=X)
  np.testing.assert_allclose(net(X), _reference(net, acts, X), rtol=1e-6, atol=1e-6)
  # the applied model is an ordinary NNX module: split, merged, jitted
  graphdef, state = nnx.split(net)
  jitted = nnx.jit(lambda m, x: m(x))(nnx.merge(graphdef, state), X)
  np.testing.assert_allclose(jitted, _reference(net, acts, X), rtol=1e-6, atol=1e-6)


def test_a_record_with_the_data_shape_applies_without_an_example(tmp_path):
  path = tmp_path / "architecture.json"
  path.write_text(json.dumps(_record(CASES["fixed"][0], data={"input_shape": [2, 1]})))
  net = actsearch.apply(str(path), Net(rngs=nnx.Rngs(1)))
  np.testing.assert_allclose(net(X), _reference(net, CASES["fixed"][1], X), rtol=1e-6,
                             atol=1e-6)


def _one_line(excinfo, *needles):
  text = str(excinfo.value)
  assert "\n" not in text
  for needle in needles:
    assert needle in text, text


class Twice(nnx.Module):
  def __init__(self, *, rngs):
    self.dense = nnx.Linear(3, 3, rngs=rngs)

  def __call__(self, x):
    return actsearch.slot(self, "act")(actsearch.slot(self, "act")(self.dense(x)))


def test_bad_input_is_one_user_error():
  with pytest.raises(actsearch.UserError) as e:
    user.find(Twice(rngs=nnx.Rngs(0)), jnp.ones((1, 3)))
  _one_line(e, "calls slot 'act' twice")
  fixed = CASES["fixed"][0]
  with pytest.raises(actsearch.UserError) as e:
    actsearch.apply(_record(fixed[:2] + [{"name": "other", "choice": "relu"}]),
                    Net(rngs=nnx.Rngs(0)), example=X)
  _one_line(e, "do not match", "blocks/1/act not in the record", "other not in the model")
  with pytest.raises(actsearch.UserError) as e:
    actsearch.apply(_record(fixed), Net(rngs=nnx.Rngs(0)))
  _one_line(e, "pass example=")
  with pytest.raises(actsearch.UserError) as e:
    actsearch.slot(object(), "act")
  _one_line(e, "takes the module")
  with pytest.raises(actsearch.UserError) as e:
    actsearch.slot(Net(rngs=nnx.Rngs(0)), "act", "no_such_activation")
  _one_line(e, "no_such_activation")


def test_a_stochastic_relaxation_samples_without_a_key_in_the_users_call():
  from actsearch.models import registry
  make = registry.search_slots(["relu", "tanh", "sin"], "gumbel", "layer", nnx.Rngs(0))
  net = user.Backbone(user.attach(Net(rngs=nnx.Rngs(0)), user.find(Net(rngs=nnx.Rngs(0)), X),
                                  make))
  assert [name for name, _ in registry.slots(net)] == NAMES
  a, b = net(X, jax.random.key(1)), net(X, jax.random.key(2))
  assert not np.allclose(a, b)  # the engine's key reaches every slot: Gumbel noise
  np.testing.assert_array_equal(net(X, jax.random.key(1)), a)  # drawn from the key alone
  soft = registry.search_slots(["relu", "tanh", "sin"], "softmax", "layer", nnx.Rngs(0))
  plain = user.Backbone(user.attach(Net(rngs=nnx.Rngs(0)), user.find(net.model, X), soft))
  np.testing.assert_allclose(net(X), plain(X), rtol=1e-6)  # no key: the relaxed mean


def test_the_example_model_and_its_searchable_version_differ_by_one_line_per_activation():
  def body(cls):
    lines = inspect.getsource(cls).splitlines()  # without the decorator and the class line
    return lines[[i for i, line in enumerate(lines) if line.startswith("class ")][0] + 1:]
  plain, searchable = body(own_model.CNN), body(own_model.SearchableCNN)
  changed = [line for line in difflib.unified_diff(plain, searchable, lineterm="", n=0)
             if line[:1] in "+-" and not line.startswith(("+++", "---"))]
  assert len(changed) == 2 * 3  # three activations: three lines out, three in
  assert all("nnx.relu(" in line for line in changed if line.startswith("-"))
  assert all("actsearch.slot(self, " in line for line in changed if line.startswith("+"))
  x = jnp.asarray(np.random.default_rng(0).random((4, 8, 8, 1)), jnp.float32)
  a, b = own_model.CNN(rngs=nnx.Rngs(0)), own_model.SearchableCNN(rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(a(x), b(x))  # outside a search: the same model


def test_importing_actsearch_changes_no_environment_and_starts_no_backend():
  code = ("import os, json; before = dict(os.environ); import actsearch; "
          "import jax._src.xla_bridge as xb; "
          "print(json.dumps([dict(os.environ) == before, xb.backends_are_initialized()]))")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, check=True).stdout
  assert json.loads(out.strip().splitlines()[-1]) == [True, False]


# The examples that search and retrain, run in this order as one session (the slow tier).
SESSION = ["search", "retrain", "load", "trained"]


def _examples(module):
  return [t for t in doctest.DocTestFinder().find(module) if t.examples]


def test_the_facade_names_have_docstrings_and_its_examples_run():
  from actsearch.data import datasets
  from actsearch.train import losses
  for name in actsearch.__all__:
    if name != "__version__":
      assert (getattr(actsearch, name).__doc__ or "").strip(), name
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
  for module in (actsearch, actsearch.api, user, losses, datasets):
    tests = [t for t in _examples(module)
             if t.name.rsplit(".", 1)[-1] not in SESSION or module is not actsearch.api]
    assert tests, module.__name__
    for test in tests:
      runner.run(test)
  assert runner.failures == 0
  shown = "".join(e.source for m in (actsearch, actsearch.api, user, losses, datasets)
                  for t in _examples(m) for e in t.examples)
  assert [n for n in actsearch.__all__ if n != "__version__"
          and f"actsearch.{n}" not in shown] == []  # every name in a runnable example


@pytest.mark.slow
def test_the_facades_search_retrain_load_and_trained_examples_run_as_one_session(tmp_path,
                                                                                 monkeypatch):
  monkeypatch.chdir(tmp_path)
  tests = {t.name.rsplit(".", 1)[-1]: t for t in _examples(actsearch.api)}
  runner, session = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS), {}
  for name in SESSION:
    test = tests[name]
    test.globs = session  # one namespace, as a user typing them in turn
    runner.run(test, clear_globs=False)
  assert runner.failures == 0 and runner.tries >= 12


BROKEN = '''
import actsearch
from actsearch.configs import base_config


@actsearch.register_model("broken")
def make(*, rngs):
  return helper(rngs)


def helper(rngs):
  raise RuntimeError("my bug")


def get_config():
  c = base_config()
  c.data.name = "digits"
  c.model.name = "broken"
  return c
'''


def test_a_users_factory_that_raises_shows_their_traceback_marked_as_theirs(tmp_path, capsys):
  from actsearch import cli
  path = tmp_path / "broken.py"
  path.write_text(BROKEN)
  assert cli.main(["search", "--config", str(path), "--workdir", str(tmp_path / "run"),
                   "--no-progress"]) == 2
  err = capsys.readouterr().err
  lines = err.strip().splitlines()
  assert f'File "{path}", line 12, in helper' in err  # their frames, their line
  assert lines[-1] == ("actsearch: error: the factory of model 'broken' raised RuntimeError: "
                       "my bug (the traceback above is from your code)")
  assert not (tmp_path / "run" / "config.json").exists()


def test_a_record_written_by_hand_retrains_against_baselines(tmp_path):
  from actsearch import cli
  path = tmp_path / "architecture.json"
  path.write_text(json.dumps({
      "schema": "actsearch.architecture/v2", "model": {"name": "mlp", "widths": [8]},
      "data": {"name": "digits"}, "layers": [{"name": "block0/act", "choice": "tanh"}]}))
  assert actsearch.load(str(path))["strategy"]["name"] == "hand"
  assert cli.main(["retrain", str(path), "--seeds", "2", "--epochs", "1", "--baselines", "relu",
                   "--workdir", str(tmp_path / "rt"), "--no-progress"]) == 0
  results = json.loads((tmp_path / "rt" / "results.json").read_text())
  assert results["found"] == "tanh" and set(results["variants"]) == {"found", "relu"}
  assert "relu" in results["paired"]


def _arrays(n=40, seed=0):
  rng = np.random.default_rng(seed)
  return {"x_train": rng.normal(size=(n, 4)), "y_train": rng.integers(0, 3, n),
          "x_test": rng.normal(size=(10, 4)), "y_test": rng.integers(0, 3, 10)}


def test_arrays_from_python_are_checked_and_saved_for_a_fresh_process(tmp_path):
  from actsearch import data
  path = str(tmp_path / "run" / "data.npz")
  arrays = _arrays()
  assert data.save_arrays(arrays, path) == path
  held = data.load_npz(path)
  assert all(np.array_equal(held[k], np.asarray(v)) for k, v in arrays.items())
  assert data.save_arrays(arrays, path) == path  # the same arrays again: a resumed run
  with pytest.raises(actsearch.UserError) as e:
    data.save_arrays(_arrays(seed=1), path)
  _one_line(e, "holds other data")
  bad = {**arrays, "y_train": arrays["y_train"][:-1]}
  with pytest.raises(actsearch.UserError) as e:
    data.save_arrays(bad, str(tmp_path / "other.npz"))
  _one_line(e, "x_train has 40 examples but y_train has 39")
  assert not (tmp_path / "other.npz").exists()


def test_the_task_can_be_stated_instead_of_inferred_from_the_labels():
  from actsearch import data
  floats = {**_arrays(), "y_train": np.random.default_rng(0).integers(0, 3, 40).astype(float),
            "y_test": np.zeros(10)}
  assert data.make_splits(floats, 0.5, 0, "x").task == data.REGRESSION  # inferred
  stated = data.make_splits(floats, 0.5, 0, "x", task="classification")
  assert stated.task == data.CLASSIFICATION and stated.num_outputs == 3
  assert data.make_splits(_arrays(), 0.5, 0, "x", task="regression").task == data.REGRESSION
  with pytest.raises(actsearch.UserError) as e:
    data.make_splits({**floats, "y_test": np.full(10, 0.5)}, 0.5, 0, "x", task="classification")
  _one_line(e, "not whole numbers")


def test_every_strategy_is_reachable_from_the_facade(tmp_path):
  # the table's strategies by name through actsearch.search, as --set search.strategy does;
  # random stands for the black box here (each runs end to end in tests/strategies)
  import actsearch
  from actsearch.strategies import table
  assert set(table.STRATEGIES) >= {"darts", "random", "evolution", "reinforce", "correlation",
                                   "random_activation"}
  cfg = actsearch.config()
  cfg.data.num_samples, cfg.model.widths = 400, [8]
  cfg.search.candidates, cfg.search.strategy = ["relu", "tanh"], "random"
  cfg.search.shortlist_epochs, cfg.retrain.batch_size = 1, 50
  cfg.search.budget = 2 * (160 // 50) * 50  # two networks of one epoch on 160 examples
  record = actsearch.search(cfg, str(tmp_path / "run"))
  assert record["strategy"]["name"] == "random" and record["strategy"]["cost"]["trainings"] == 2
  assert len(record["selection"]["evaluated"]) == 2


def test_search_resolves_a_copy_and_leaves_the_callers_config_unchanged(tmp_path):
  """The run reads its resolved copy (groups expanded, user code and implementation plan
  recorded); the caller's ConfigDict equals a deep copy taken before the call."""
  import copy

  from actsearch.space import activations
  cfg = actsearch.config()
  cfg.data.num_samples, cfg.model.widths, cfg.search.epochs = 400, [8], 1
  cfg.search.candidates, cfg.search.discretize = ["default"], "argmax"
  before = copy.deepcopy(cfg)
  record = actsearch.search(cfg, str(tmp_path / "run"))
  assert cfg == before and cfg.to_json() == before.to_json()
  assert record["candidates"] == list(activations.DEFAULT)  # the copy was expanded
  stored = json.loads((tmp_path / "run" / "config.json").read_text())
  assert stored["search"]["candidates"] == list(activations.DEFAULT)
  assert stored["search"]["implementation"] != "auto"  # the plan chosen, in the copy only
