"""The example a user copies (experiments/own_model.py): their own NNX model through every
command, each in its own process (slow tier: a chain of processes)."""

import json

import numpy as np
import pytest
from flax import nnx
from tensorboard.backend.event_processing import event_accumulator

from actsearch import architecture

from conftest import ROOT, assert_bad_input, run_cli

EXAMPLE = f"{ROOT}/experiments/own_model.py"
SMALL = ["--set", "search.epochs=2", "--set", "search.shortlist_epochs=1",
         "--set", 'search.candidates=["relu","gelu","tanh"]', "--no-progress"]
SLOTS = ["conv1", "conv2", "linear1"]


@pytest.mark.slow
def test_the_example_searches_exports_and_retrains_each_in_its_own_process(tmp_path):
  run = tmp_path / "run"
  proc = run_cli("search", "--config", EXAMPLE, "--workdir", str(run), *SMALL)
  assert proc.returncode == 0, proc.stderr
  arch = architecture.load(str(run / "architecture.json"))
  assert [layer["name"] for layer in arch["layers"]] == SLOTS
  assert arch["model"]["name"] == "own_cnn" and EXAMPLE in arch["code"]
  acc = event_accumulator.EventAccumulator(str(run))
  acc.Reload()
  assert {f"arch/{s}/gelu" for s in SLOTS} <= set(acc.Tags()["scalars"])
  # a softmax search alike, from Python: a Gumbel search whose key did not reach the slots
  # would equal it
  import actsearch
  cfg = actsearch.config(EXAMPLE)
  cfg.search.epochs, cfg.search.shortlist_epochs = 2, 1
  cfg.search.candidates, cfg.search.relaxation = ["relu", "gelu", "tanh"], "softmax"
  soft = actsearch.search(cfg, str(tmp_path / "softmax"))
  weights = lambda a: [list(layer["weights"].values()) for layer in a["layers"]]  # noqa: E731
  assert not np.allclose(weights(arch), weights(soft))
  report = actsearch.retrain(str(tmp_path / "softmax" / "architecture.json"), seeds=1,
                             epochs=1, baselines=[])
  assert report["variants"]["found"]["seeds"][0]["test_accuracy"] > 0.1
  # export and retrain find the user's backbone when its file is passed, and say so when not
  assert_bad_input(run_cli("export", str(run)), "own_cnn", f"--import {EXAMPLE}")
  assert_bad_input(run_cli("retrain", str(run / "architecture.json"), "--seeds", "2"),
                   "own_cnn", f"--import {EXAMPLE}")
  before = (run / "architecture.json").read_bytes()
  proc = run_cli("export", str(run), "--import", EXAMPLE)
  assert proc.returncode == 0, proc.stderr
  assert json.loads((run / "architecture.json").read_bytes())["layers"] == \
      json.loads(before)["layers"]
  show = run_cli("show", str(run / "architecture.json"))  # imports nothing
  assert show.returncode == 0 and all(s in show.stdout for s in SLOTS)
  proc = run_cli("retrain", str(run / "architecture.json"), "--import", EXAMPLE, "--seeds", "2",
                 "--epochs", "2", "--workdir", str(tmp_path / "rt"), "--no-progress")
  assert proc.returncode == 0, proc.stderr
  results = json.loads((tmp_path / "rt" / "results.json").read_text())
  assert {"found", "relu", "gelu"} <= set(results["variants"])
  # the weights out: seed 1's trained network as the user's own module, scored by a forward
  # pass of this test's own, reproduces the retrain's test accuracy exactly
  import jax.numpy as jnp

  from actsearch import data, usercode
  example = usercode.import_code(EXAMPLE)
  digits = data.digits(0, images=True)
  for variant in ("found", "relu"):
    model = actsearch.trained(str(tmp_path / "rt"), variant, seed=1)
    assert isinstance(model, example.SearchableCNN)
    logits = np.asarray(model(jnp.asarray(digits["x_test"], jnp.float32)))
    acc = float(np.mean(np.argmax(logits, -1) == digits["y_test"]))
    want = [s for s in results["variants"][variant]["seeds"] if s["seed"] == 1]
    assert acc == want[0]["test_accuracy"]
  # and into a model the user builds: the record applied, the weights file loaded
  from actsearch.train import weights
  mine = actsearch.apply(str(run / "architecture.json"), example.SearchableCNN(rngs=nnx.Rngs(7)))
  weights.load_into(str(tmp_path / "rt" / "found" / "weights" / "seed1"), mine)
  np.testing.assert_array_equal(
      mine(jnp.asarray(digits["x_test"][:8], jnp.float32)),
      actsearch.trained(str(tmp_path / "rt"), "found", seed=1)(
          jnp.asarray(digits["x_test"][:8], jnp.float32)))


@pytest.mark.slow
def test_a_search_on_arrays_from_python_is_found_by_a_fresh_retrain(tmp_path):
  import actsearch
  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 6)).astype(np.float32)
  y = (x[:, 0] * x[:, 1] > 0).astype(float)  # float labels, stated a classification
  cfg = actsearch.config()
  cfg.data.task = "classification"
  cfg.model.widths = [8]
  cfg.search.epochs, cfg.search.discretize = 2, "argmax"
  cfg.search.candidates = ["relu", "tanh"]
  arch = actsearch.search(cfg, str(tmp_path / "run"), data={
      "x_train": x[:240], "y_train": y[:240], "x_test": x[240:], "y_test": y[240:]})
  assert arch["data"]["task"] == "classification" and (tmp_path / "run" / "data.npz").is_file()
  proc = run_cli("retrain", str(tmp_path / "run" / "architecture.json"), "--seeds", "2",
                 "--epochs", "1", "--baselines", "relu", "--no-progress")
  assert proc.returncode == 0, proc.stderr
  results = json.loads((tmp_path / "run" / "retrain" / "results.json").read_text())
  assert results["protocol"]["test_examples"] == 60
