"""Bad input: exit code 2, one line on stderr naming the problem, no traceback, nothing damaged.

``show``, ``candidates`` and the parser's errors run the real command in a fresh process, as a
user meets it; the search's bad inputs run ``cli.main`` in this process (the same code from
the parsed arguments on, without a process start for each).
"""

import json
import os

import numpy as np
import pytest

from conftest import ROOT, assert_bad_input, run_cli

MLP = os.path.join(ROOT, "experiments", "mlp.py")


@pytest.fixture
def search(in_process):
  """``actsearch search ARGS`` in this process."""
  return lambda *args: in_process("search", *args)


@pytest.fixture
def workdir_with_config(tmp_path):
  """A workdir holding files a bad command must leave untouched."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text('{"keep": "me"}\n')
  (workdir / "architecture.json").write_text('{"keep": "me too"}\n')
  return workdir


def _unchanged(workdir):
  return ((workdir / "config.json").read_text() == '{"keep": "me"}\n'
          and (workdir / "architecture.json").read_text() == '{"keep": "me too"}\n'
          and sorted(os.listdir(workdir)) == ["architecture.json", "config.json"])


def test_unknown_candidate_in_a_config_file(tmp_path, classification_npz, workdir_with_config,
                                            search):
  config = tmp_path / "exp.py"
  config.write_text("from actsearch.configs import base_config\n\n"
                    "def get_config():\n  c = base_config()\n"
                    "  c.search.candidates = ['relu', 'swishy']\n  return c\n")
  proc = search("--config", str(config), "--data", classification_npz,
                 "--workdir", str(workdir_with_config))
  assert_bad_input(proc, "unknown candidate activation 'swishy'", "known:", "gelu")
  assert _unchanged(workdir_with_config)


def test_set_of_an_unknown_key(classification_npz, workdir_with_config, search):
  proc = search("--config", MLP, "--data", classification_npz,
                 "--workdir", str(workdir_with_config), "--set", "model.width=[4]")
  assert_bad_input(proc, "unknown config key 'model.width'", "model.widths")
  assert _unchanged(workdir_with_config)


def test_set_of_a_wrongly_typed_value(classification_npz, workdir_with_config, search):
  proc = search("--config", MLP, "--data", classification_npz,
                 "--workdir", str(workdir_with_config), "--set", "search.epochs=many")
  assert_bad_input(proc, "search.epochs", "expected int", "many")
  assert _unchanged(workdir_with_config)


def test_missing_npz(tmp_path, workdir_with_config, search):
  proc = search("--config", MLP, "--data", str(tmp_path / "nowhere.npz"),
                 "--workdir", str(workdir_with_config))
  assert_bad_input(proc, "data file not found", "nowhere.npz")
  assert _unchanged(workdir_with_config)


def test_malformed_npz(tmp_path, workdir_with_config, search):
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"PK\x03\x04 truncated")
  proc = search("--config", MLP, "--data", str(bad),
                 "--workdir", str(workdir_with_config))
  assert_bad_input(proc, "bad.npz", "not a readable .npz")
  wrong = tmp_path / "wrong.npz"
  np.savez(wrong, x_train=np.zeros((8, 2)), y_train=np.zeros(7, int),
           x_test=np.zeros((2, 2)), y_test=np.zeros(2, int))
  proc = search("--config", MLP, "--data", str(wrong),
                 "--workdir", str(workdir_with_config))
  assert_bad_input(proc, "x_train has 8 examples but y_train has 7")
  assert _unchanged(workdir_with_config)


@pytest.mark.parametrize("content, needle", [
    ("{not json", "malformed JSON"),
    ('{"schema": "something/else"}', "schema is 'something/else'"),
    (json.dumps({"schema": "actsearch.architecture/v1", "candidates": ["relu"],
                 "relaxation": "softmax", "granularity": "layer", "model": {}, "data": {},
                 "metrics": {}, "seed": 0,
                 "layers": [{"name": "block0/act", "choice": "gelu",
                             "weights": {"relu": 1.0}, "params": {}}]}),
     "choice 'gelu' is not one of the candidates"),
])
def test_show_of_a_malformed_architecture(tmp_path, content, needle):
  path = tmp_path / "architecture.json"
  path.write_text(content)
  assert_bad_input(run_cli("show", str(path)), needle)
  assert path.read_text() == content


def test_show_of_a_missing_file_and_unknown_flags(tmp_path):
  assert_bad_input(run_cli("show", str(tmp_path / "none.json")), "not found")
  assert_bad_input(run_cli("search", "--config", MLP), "--workdir")


def test_candidates_lists_every_builtin_with_its_formula():
  proc = run_cli("candidates")
  assert proc.returncode == 0
  rows = [line.split("  ") for line in proc.stdout.splitlines() if line.startswith("  ")]
  formulas = {r[1].strip(): [c.strip() for c in r[2:] if c.strip()][0] for r in rows
              if len(r) > 2 and r[1].strip()}
  assert formulas["gaussian"] == "exp(-x^2)" and formulas["sin"] == "sin(x)"
  assert {"relu", "gelu", "gelu_exact", "hard_swish", "log_sigmoid", "abs", "prelu", "pau",
          "nn_act", "maxout", "apl"} <= set(formulas)
  for kind in ("fixed (", "parametric (", "learned ("):
    assert kind in proc.stdout


@pytest.mark.parametrize("value, needles", [
    ('{"block7/act": ["relu"]}', ["search.slot_candidates names 'block7/act'", "block0/act"]),
    ('{"block0/act": "relu"}', ["search.slot_candidates.block0/act must be a list"]),
    ('{"block0/act": ["relu", "nn_actt"]}', ["unknown candidate activation 'nn_actt'"]),
])
def test_bad_slot_candidates(value, needles, tmp_path, classification_npz, workdir_with_config,
                             search):
  config = tmp_path / "exp.py"
  config.write_text("from actsearch.configs import base_config\n\n"
                    "def get_config():\n  c = base_config()\n  c.data.name = 'npz'\n"
                    f"  c.search.slot_candidates = {value}\n  return c\n")
  proc = search("--config", str(config), "--data", classification_npz,
                "--workdir", str(workdir_with_config))
  assert_bad_input(proc, *needles)
  assert _unchanged(workdir_with_config)


@pytest.mark.slow  # two processes
def test_an_import_that_fails_is_one_line(tmp_path, workdir_with_config):
  bad = tmp_path / "bad.py"
  bad.write_text("raise RuntimeError('nope')\n")
  proc = run_cli("candidates", "--import", str(bad))
  assert_bad_input(proc, "bad.py", "RuntimeError: nope")
  assert_bad_input(run_cli("candidates", "--import", "no_such_module_here"),
                   "no_such_module_here")
