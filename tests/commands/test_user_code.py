"""A candidate registered in an experiment file: it searches, exports, shows and retrains,
each command in its own process, with the file given on the command line; a record never
imports code by itself."""

import json
import textwrap

import pytest

from conftest import assert_bad_input, run_cli

pytestmark = pytest.mark.slow

EXPERIMENT = textwrap.dedent('''
    import jax.numpy as jnp

    from actsearch import activations
    from actsearch.configs import base_config

    # a parametric candidate of the user's own: x + a exp(-x^2), a learned
    activations.register("mine_bump", lambda x, a: x + a * jnp.exp(-x * x), "x + a exp(-x^2)",
                         {"a": 0.5}, source="a test's experiment file")


    def get_config():
      c = base_config()
      c.data.name = "digits"
      c.model.widths = [8, 8]
      c.search.epochs = 2
      c.search.batch_size = 64
      c.search.candidates = ["relu", "mine_bump"]
      c.retrain.epochs = 1
      c.retrain.seeds = 1
      c.retrain.baselines = ["relu", "mine_bump"]
      return c
''')


def test_a_candidate_of_an_experiment_file_searches_exports_shows_and_retrains(tmp_path):
  exp = tmp_path / "my_experiment.py"
  exp.write_text(EXPERIMENT)
  run = tmp_path / "run"
  proc = run_cli("search", "--config", str(exp), "--workdir", str(run), "--no-progress")
  assert proc.returncode == 0, proc.stderr
  arch = json.loads((run / "architecture.json").read_text())
  assert arch["schema"] == "actsearch.architecture/v2" and arch["code"] == [str(exp)]
  assert "mine_bump" in arch["candidates"]

  # Without the file: export and retrain stop with one line naming what to pass.
  assert_bad_input(run_cli("export", str(run)), "mine_bump", f"--import {exp}")
  assert_bad_input(run_cli("retrain", str(run / "architecture.json"), "--no-progress",
                           "--workdir", str(tmp_path / "refused")), "mine_bump",
                   f"--import {exp}")
  assert not (tmp_path / "refused").exists()

  proc = run_cli("export", str(run), "--import", str(exp), "--out", str(tmp_path / "again.json"))
  assert proc.returncode == 0, proc.stderr
  again = json.loads((tmp_path / "again.json").read_text())
  assert [layer["choice"] for layer in again["layers"]] == [
      layer["choice"] for layer in arch["layers"]]

  proc = run_cli("show", str(run / "architecture.json"))  # imports nothing
  assert proc.returncode == 0, proc.stderr
  assert "block0/act" in proc.stdout and str(exp) in proc.stdout

  proc = run_cli("retrain", str(run / "architecture.json"), "--import", str(exp),
                 "--no-progress", "--workdir", str(tmp_path / "retrain"))
  assert proc.returncode == 0, proc.stderr
  results = json.loads((tmp_path / "retrain" / "results.json").read_text())
  assert set(results["variants"]) == {"found", "relu", "mine_bump"}


def test_show_never_runs_code_a_record_names(tmp_path):
  """A record naming a file that would write a marker when run: show leaves it unrun."""
  marker = tmp_path / "ran"
  evil = tmp_path / "evil.py"
  evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
  record = {
      "schema": "actsearch.architecture/v2", "candidates": ["relu", "evil_act"],
      "relaxation": "softmax", "granularity": "layer", "param_granularity": "layer",
      "layers": [{"name": "block0/act", "choice": "evil_act",
                  "weights": {"relu": 0.2, "evil_act": 0.8}}],
      "model": {"name": "mlp", "widths": [4]}, "data": {"name": "digits"}, "metrics": {},
      "seed": 0, "strategy": {"name": "darts", "cost": {}}, "code": [str(evil)]}
  path = tmp_path / "architecture.json"
  path.write_text(json.dumps(record))
  proc = run_cli("show", str(path))
  assert proc.returncode == 0, proc.stderr
  assert_bad_input(run_cli("retrain", str(path), "--no-progress"), "evil_act",
                   f"--import {evil}")
  assert not marker.exists()
