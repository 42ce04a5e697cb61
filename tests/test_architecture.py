"""The record's reader table, and what users have on disk from before the folders: a search
workdir and its ``architecture.json`` written by actsearch at b4767c4 (``fixtures/``) load,
show, retrain and resume."""

import json
import os
import shutil

import numpy as np
import pytest

from actsearch import architecture, cli
from actsearch.errors import UserError

from conftest import ROOT, run_cli

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "legacy_b4767c4")
LEGACY_SETS = ["search.strategy=darts", "data.num_samples=600", "model.widths=[8,8]",
               "search.epochs=2", "search.batch_size=50", "search.discretize=argmax",
               "search.eval_every=1",
               # the experiment's candidates, shortlist and baselines when the fixture was made
               'search.candidates=["relu","gelu","silu","tanh","sin","elu","softplus","gaussian"]',
               "search.shortlist_k=2", 'retrain.baselines=["relu","gelu","silu","elu"]',
               "search.learning_curve=false"]


@pytest.fixture
def legacy_run(tmp_path):
  path = tmp_path / "search"
  shutil.copytree(os.path.join(FIXTURES, "search_epoch1"), path)
  return path


def test_every_version_is_one_entry_of_the_reader_table():
  assert architecture.SCHEMA in architecture.READERS
  with pytest.raises(UserError, match=r"schema is 'actsearch.architecture/v0'; this actsearch "
                                      r"reads 'actsearch.architecture/v1', "
                                      r"'actsearch.architecture/v2'"):
    architecture.validate({"schema": "actsearch.architecture/v0"}, "x.json")
  with pytest.raises(UserError, match="schema is None"):
    architecture.validate({}, "x.json")


def test_a_record_of_the_old_code_loads_and_shows(legacy_run):
  arch = architecture.load(str(legacy_run / "architecture.json"))
  assert arch["schema"] == "actsearch.architecture/v1"
  assert json.loads((legacy_run / "architecture.json").read_text()).get("strategy") is None
  assert arch["strategy"] == {"name": "darts", "cost": {}}  # read into the v2 form
  proc = run_cli("show", str(legacy_run / "architecture.json"))
  assert proc.returncode == 0, proc.stderr
  assert "block0/act" in proc.stdout and "gumbel relaxation" in proc.stdout


@pytest.mark.slow  # 22 s; a record written before retrain existed retrains in the fast tier
def test_a_record_of_the_old_code_retrains(legacy_run, capsys):
  assert cli.main(["retrain", str(legacy_run / "architecture.json"), "--seeds", "1",
                   "--epochs", "1", "--baselines", "relu", "--no-progress"]) == 0
  results = json.loads((legacy_run / "retrain" / "results.json").read_text())
  assert set(results["variants"]) == {"found", "relu"}


@pytest.mark.slow  # 16 s; the old record's show and the old results' reading stay fast
def test_a_workdir_of_the_old_code_resumes_and_ends_as_the_old_code_did(legacy_run):
  args = ["search", "--config", os.path.join(ROOT, "experiments", "mnist1d_mlp.py"),
          "--workdir", str(legacy_run), "--epochs", "2", "--no-progress"]
  for s in LEGACY_SETS:
    args += ["--set", s]
  assert cli.main(args) == 0
  steps = [json.loads(line)["step"] for line in (legacy_run / "metrics.jsonl").read_text()
           .splitlines() if "train/loss" in line]
  assert steps == list(range(1, 13))  # epoch 1's six steps kept, epoch 2's six appended
  new = architecture.load(str(legacy_run / "architecture.json"))
  old = architecture.load(os.path.join(FIXTURES, "expected_epoch2_architecture.json"))
  assert [x["choice"] for x in new["layers"]] == [x["choice"] for x in old["layers"]]
  for a, b in zip(new["layers"], old["layers"]):
    np.testing.assert_allclose([a["weights"][c] for c in new["candidates"]],
                               [b["weights"][c] for c in old["candidates"]], rtol=0, atol=1e-6)
  assert new["metrics"] == pytest.approx(old["metrics"], abs=1e-6)


def _shortlisted(choice0, scores):
  layers = [{"name": "a", "choice": choice0, "weights": {"relu": 0.6, "gelu": 0.4}},
            {"name": "b", "choice": "gelu", "weights": {"relu": 0.3, "gelu": 0.7}}]
  nets = [{"choices": {"a": x, "b": "gelu"}, "score": s} for x, s in scores]
  return architecture.validate(architecture.make(
      layers, candidates=["relu", "gelu"], relaxation="gumbel", granularity="layer", model={},
      data={}, metrics={}, seed=0, discretize="shortlist",
      selection={"method": "shortlist", "score": "val accuracy", "seconds": 2.0,
                 "evaluated": nets}))


def test_show_says_what_decided_when_it_was_not_the_weights():
  text = architecture.table(_shortlisted("gelu", [("relu", 0.90), ("gelu", 0.93)]))
  assert "decided by shortlist, not the weights, in a (gelu: weight rank 2 of 2; relu had " \
         "the largest)" in text
  assert "the weights' favourite network relu / gelu scored 0.9; the chosen gelu / gelu " \
         "scored 0.93" in text
  agreed = architecture.table(_shortlisted("relu", [("relu", 0.93), ("gelu", 0.90)]))
  assert "decided: the weights" in agreed and "not the weights" not in agreed


@pytest.mark.parametrize("selection,needle", [
    ({"method": 3}, "'selection' must hold"),
    ({"method": "shortlist", "evaluated": [{"choices": {"a": 1}, "score": 0.5}]},
     "'selection.evaluated' must list"),
    ({"method": "shortlist", "evaluated": [{"choices": {"a": "relu"}}]},
     "'selection.evaluated' must list"),
    ({"method": "shortlist", "evaluated": "many"}, "must be a count or a list"),
])
def test_a_malformed_selection_is_one_line(tmp_path, selection, needle):
  arch = _shortlisted("gelu", [("relu", 0.9)])
  arch["selection"] = selection
  path = tmp_path / "a.json"
  path.write_text(json.dumps(arch))
  with pytest.raises(UserError, match=needle):
    architecture.load(str(path))


def test_show_says_what_a_strategy_without_weights_did():
  layers = [{"name": "block0/act", "choice": "prelu", "candidates": ["prelu"],
             "scores": {"prelu": 0.998}, "params": {}}]
  arch = architecture.validate(architecture.make(
      layers, candidates=["relu", "prelu"], relaxation=None, granularity="layer", model={},
      data={}, metrics={"val_accuracy": 0.3}, seed=0, discretize="correlation",
      strategy="correlation", selection={"method": "correlation (parameter)",
                                         "score": "Pearson r", "seconds": 1.0,
                                         "rounds": [{}, {}]}))
  text = architecture.table(arch)
  assert "strategy correlation" in text and "found: val_accuracy 0.3" in text
  assert "(2 rounds, 1.0 s)" in text and "None" not in text
  assert "decided by correlation (parameter) (no relaxed weights)" in text


@pytest.mark.parametrize("scores, header, row", [
    # a screen's scores decided: the runner-up by score (sin), not by weight (relu)
    ({"relu": 0.80, "gelu": 0.90, "sin": 0.85}, "score",
     ["a", "gelu", "0.9000", "sin", "0.8500", "0.0500"]),
    # argmax: its scores are its weights
    ({"relu": 0.5, "gelu": 0.3, "sin": 0.2}, "weight", ["a", "gelu", "0.300", "relu", "0.500",
                                                      "-0.200"]),
    # one finite score (the others diverged): the weights
    ({"relu": float("-inf"), "gelu": 0.9, "sin": float("-inf")}, "weight",
     ["a", "gelu", "0.300", "relu", "0.500", "-0.200"]),
])
def test_show_ranks_by_what_decided(scores, header, row):
  layer = {"name": "a", "choice": "gelu", "weights": {"relu": 0.5, "gelu": 0.3, "sin": 0.2},
           "scores": scores}
  text = architecture.table(architecture.make(
      [layer], candidates=["relu", "gelu", "sin"], relaxation="gumbel", granularity="layer",
      model={}, data={}, metrics={}, seed=0))
  lines = text.splitlines()
  assert lines[1].split() == ["slot", "choice", header, "runner-up", header, "margin"]
  assert lines[3].split() == row
