"""Extending actsearch: a dataset, a loss and a strategy, each one file and one registration,
are registered with their file, listed by ``actsearch known``, used end to end through the
command line, and refused in a fresh process without the file with one line that says
"pass --import FILE". Table-driven: one row per kind of extension."""

import json
import os
import textwrap

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
