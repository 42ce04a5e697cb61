"""Extending actsearch: a dataset, a loss and a strategy, each one file and one registration,
are registered with their file, listed by ``actsearch known``, used end to end through the
command line, and refused in a fresh process without the file with one line that says
"pass --import FILE". Table-driven: one row per kind of extension."""

import json
import os
import textwrap

import numpy as np
import pytest

from actsearch import usercode
from actsearch.commands import known
from actsearch.errors import UserError

from conftest import ROOT, assert_bad_input, run_cli

DATASET = '''
import numpy as np
import actsearch

@actsearch.register_dataset("ext_blobs")
def blobs(data_cfg):
  """Three Gaussian blobs in 6 dimensions (data.data_seed)."""
  rng = np.random.default_rng(data_cfg.data_seed)
  y = rng.integers(0, 3, size=600)
  x = (rng.normal(size=(600, 6)) + 2.0 * np.eye(3, 6)[y]).astype(np.float32)
  return {"x_train": x[:500], "y_train": y[:500], "x_test": x[500:], "y_test": y[500:]}
'''

LOSS = '''
import jax.numpy as jnp
import optax
import actsearch

@actsearch.register_loss("ext_smoothed")
def smoothed(outputs, labels):
  """Cross-entropy with labels smoothed by 0.1."""
  target = optax.smooth_labels(jnp.eye(outputs.shape[-1])[labels], 0.1)
  return optax.softmax_cross_entropy(outputs, target)
'''

# every slot takes the candidate search.ext_first.which names (its own config namespace)
STRATEGY = '''
import actsearch
from actsearch import models
from actsearch.models import network

def run(r):
  cfg, s = r.cfg, r.splits
  choice = list(cfg.search.candidates)[cfg.search.ext_first.which]
  model = models.build(cfg.model, s.input_shape, s.num_outputs, models.uniform_slots(choice),
                       network.rngs(cfg.seed))
  layers = [{"name": n, "choice": choice, "params": {}} for n, _ in models.slots(model)]
  return actsearch.Found(layers=layers, metrics={}, fields={"discretize": "ext_first"})

actsearch.register_strategy("ext_first", actsearch.Strategy(
    run=run, defaults={"which": 0}, doc="every slot the candidate search.ext_first.which names"))
'''

QUICK = ["--set", 'search.candidates=["relu","tanh"]', "--set", "model.widths=[8]",
         "--set", "retrain.epochs=1"]
RACE = ["--set", "search.strategy=race", "--set", "search.race.epochs=[1]",
        "--set", "search.race.keep=[]"]

# kind, file text, entry, how a search uses it, what refuses it in a fresh process without it
KINDS = {
    "datasets": (DATASET, "ext_blobs", ["--set", "data.name=ext_blobs", *RACE], "retrain"),
    "losses": (LOSS, "ext_smoothed", ["--data", "{npz}", "--set", "data.loss=ext_smoothed",
                                      *RACE], "retrain"),
    "strategies": (STRATEGY, "ext_first", ["--data", "{npz}", "--set", "search.strategy=ext_first",
                                           "--set", "search.ext_first.which=1"], "export"),
}


def _write(tmp_path, kind) -> str:
  path = tmp_path / f"my_{kind}.py"
  path.write_text(textwrap.dedent(KINDS[kind][0]))
  return str(path)


@pytest.mark.parametrize("kind", KINDS)
def test_an_extension_is_registered_with_its_file_and_listed(tmp_path, kind):
  path = _write(tmp_path, kind)
  reg, entry = known.registries()[kind], KINDS[kind][1]
  try:
    usercode.import_code(path)
    assert entry in reg and reg.code(entry) == os.path.abspath(path)
    line = next(x for x in known.text([kind]).splitlines() if x.strip().startswith(entry))
    assert f"[{os.path.abspath(path)}]" in line and reg.doc(entry) in line and reg.doc(entry)
    with pytest.raises(UserError, match=f"pass --import {path}"):
      reg.require(entry + "_not_here", code=[path])
  finally:
    reg.remove(entry)
  with pytest.raises(UserError, match=f"unknown .*'{entry}'; known: "):
    reg.require(entry)


def test_a_strategys_defaults_are_its_config_namespace(tmp_path):
  from actsearch import configs
  from actsearch.strategies import table
  usercode.import_code(_write(tmp_path, "strategies"))
  try:
    assert configs.base_config().search.ext_first.to_dict() == {"which": 0}
  finally:
    table.STRATEGIES.remove("ext_first")
  assert "ext_first" not in configs.base_config().search


@pytest.mark.slow  # three searches, retrains and refusals, each in a fresh process (about 90 s)
@pytest.mark.parametrize("kind", KINDS)
def test_an_extension_runs_end_to_end_and_a_fresh_process_without_it_is_told_the_file(
    tmp_path, kind, classification_npz):
  path = _write(tmp_path, kind)
  _, entry, uses, refuses = KINDS[kind]
  listed = run_cli("known", kind, "--import", path)
  assert listed.returncode == 0 and entry in listed.stdout and path in listed.stdout
  workdir = tmp_path / "run"
  uses = [u.format(npz=classification_npz) for u in uses]
  proc = run_cli("search", "--config", os.path.join(ROOT, "experiments", "mlp.py"), "--import",
                 path, "--workdir", str(workdir), "--no-progress", *QUICK, *uses)
  assert proc.returncode == 0, proc.stderr
  arch = json.loads((workdir / "architecture.json").read_text())
  assert arch["code"] == [os.path.abspath(path)]
  if kind == "strategies":  # search.ext_first.which=1: the second candidate
    assert {layer["choice"] for layer in arch["layers"]} == {"tanh"}
    assert json.loads((workdir / "config.json").read_text())["search"]["ext_first"] == {
        "which": 1}
  else:
    assert arch["data"]["name" if kind == "datasets" else "loss"] == entry
  record = str(workdir / "architecture.json")
  again = ["retrain", record, "--seeds", "2", "--baselines", "relu", "--no-progress"] \
      if refuses == "retrain" else ["export", str(workdir)]
  assert_bad_input(run_cli(*again), entry, f"pass --import {os.path.abspath(path)}")
  if refuses == "retrain":  # with the file, the record retrains
    done = run_cli(*again, "--import", path)
    assert done.returncode == 0, done.stderr
    assert "Verdict" in done.stdout


def _strategy(**kw):
  import actsearch
  return actsearch.Strategy(run=lambda r: None, **kw)


BAD_REGISTRATIONS = {
    "a built-in dataset's name": (lambda a: a.register_dataset("mnist1d")(lambda d: {}),
                                  "'mnist1d' is built in"),
    "a dataset that is no function": (lambda a: a.register_dataset("ext_bad")(3),
                                      "must be a function"),
    "a built-in strategy's name": (lambda a: a.register_strategy("darts", _strategy()),
                                   "'darts' is built in"),
    "a strategy that is no Strategy": (lambda a: a.register_strategy("ext_bad", object()),
                                       "must be an actsearch.Strategy"),
    "a strategy whose defaults are no dict": (
        lambda a: a.register_strategy("ext_bad", _strategy(defaults=[1])),
        "defaults must be a dict"),
    "a loss with a built-in's name": (lambda a: a.register_loss("cross_entropy")(lambda o, y: o),
                                      "a loss needs a new name"),
}


@pytest.mark.parametrize("case", BAD_REGISTRATIONS)
def test_a_bad_registration_is_one_user_error_and_registers_nothing(case):
  import actsearch
  register, needle = BAD_REGISTRATIONS[case]
  before = {kind: list(reg) for kind, reg in known.registries().items()}
  with pytest.raises(UserError, match=needle):
    register(actsearch)
  assert {kind: list(reg) for kind, reg in known.registries().items()} == before


@pytest.mark.parametrize("returns, error", [
    (lambda d: [1, 2], "returned list; it must return a dict of arrays"),
    (lambda d: {"x_train": np.zeros((4, 2))}, "ext_broken lacks arrays y_train, x_test, y_test"),
    (lambda d: {"x_train": np.zeros((4, 2)), "y_train": np.zeros(4, int), "x_test":
                np.zeros((2, 3)), "y_test": np.zeros(2, int)}, "disagree in shape"),
])
def test_a_datasets_bad_arrays_are_one_user_error(returns, error):
  import actsearch
  from actsearch import data
  actsearch.register_dataset("ext_broken")(returns)
  try:
    cfg = actsearch.config()
    cfg.data.name = "ext_broken"
    with pytest.raises(UserError, match=error):
      data.load(cfg.data, 0)
  finally:
    known.registries()["datasets"].remove("ext_broken")


def test_an_exception_in_a_users_dataset_is_marked_as_theirs():
  import actsearch
  from actsearch import data
  from actsearch.errors import USER_CODE

  def broken(data_cfg):
    raise FileNotFoundError("their_file.csv")
  actsearch.register_dataset("ext_raises")(broken)
  try:
    cfg = actsearch.config()
    cfg.data.name = "ext_raises"
    with pytest.raises(FileNotFoundError) as err:
      data.load(cfg.data, 0)
    assert getattr(err.value, USER_CODE) == "dataset 'ext_raises'"
  finally:
    known.registries()["datasets"].remove("ext_raises")
