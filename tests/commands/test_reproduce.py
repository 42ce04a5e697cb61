"""The reproduce table: the found network against the best of the usual activations."""

import os

import pytest

from actsearch import stats
from actsearch.commands import reproduce


def report(values: dict[str, list[float]], higher: bool = True) -> dict:
  found = values["found"]
  return {"metric": "test_accuracy" if higher else "test_loss", "higher_is_better": higher,
          "found": "a / b", "variants": {k: {} for k in values},
          "summary": {k: stats.summary(v) for k, v in values.items()},
          "paired": {k: stats.paired(found, v) for k, v in values.items() if k != "found"},
          "protocol": {"train_examples": 10, "test_examples": 5}}


BASE = [0.90, 0.91, 0.92, 0.93, 0.94]


@pytest.mark.parametrize("found_shift,other,want", [
    (0.02, {}, "wins"),                      # above gelu on every seed
    (0.0, {}, "ties"),
    (-0.02, {}, "loses"),
    (0.02, {"pau": [v + 0.05 for v in BASE]}, "wins"),  # pau is not a usual activation
])
def test_the_found_network_is_judged_against_the_best_usual_activation(found_shift, other, want):
  noise = [0.001, -0.001, 0.002, 0.0, -0.002]
  values = {"found": [v + found_shift + n for v, n in zip(BASE, noise)],
            "relu": [v - 0.03 for v in BASE], "gelu": BASE, **other}
  usual = reproduce.against_usual(report(values))
  assert usual["baseline"] == "gelu" and usual["verdict"] == want
  assert usual["mean_diff"] == pytest.approx(found_shift)


def test_for_a_loss_lower_is_better():
  found = [v - 0.1 + n for v, n in zip(BASE, [0.01, 0, -0.01, 0.02, 0])]
  values = {"found": found, "relu": BASE, "silu": [v + 0.2 for v in BASE]}
  usual = reproduce.against_usual(report(values, higher=False))
  assert usual["baseline"] == "relu" and usual["verdict"] == "wins"


def test_without_a_usual_baseline_there_is_no_comparison():
  assert reproduce.against_usual(report({"found": BASE, "pau": BASE})) is None


def test_the_table_holds_every_row_and_the_usual_comparison():
  values = {"found": [v + 0.02 for v in BASE], "relu": BASE, "gelu": [v - 0.01 for v in BASE],
            "pau": BASE}
  out = {"seeds": 5, "seconds": 12.0, "tasks": [
      {"task": "t", "title": "Task", "search_seconds": 3.0, "relu_seed_seconds": 1.5,
       "report": {**report(values), "verdict": "wins", "best_baseline": "relu"}}]}
  text = reproduce.markdown(out)
  header = next(line for line in text.splitlines() if line.startswith("| task"))
  assert "| relu | gelu | pau |" in header and "found - best of relu / gelu / silu / elu" in header
  row = next(line for line in text.splitlines() if line.startswith("| Task"))
  assert "+2.00 [+2.00, +2.00] wins (relu)" in row and "2.0x" in row


def test_tasks_that_differ_only_in_their_search_compare_their_found_networks():
  def task(name, found):
    rep = report({"found": BASE, "relu": BASE})
    rep["found"] = found
    rep["config"] = {"data": {"name": "mnist1d"}, "model": {"name": "cnn1d"}, "retrain": {}}
    rep["variants"] = {"found": {}, "relu": {}}
    return {"task": name, "title": name, "search_seconds": 1.0,
            "relu_seed_seconds": 1.0, "report": rep}

  rows = [task("a", "x / y"), task("b", "z / z")]
  rows[1]["report"]["variants"]["found"]["seeds"] = [
      {"seed": s, "test_accuracy": v} for s, v in enumerate([0.90, 0.92, 0.91, 0.94, 0.93])]
  rows[0]["report"]["variants"]["found"]["seeds"] = [
      {"seed": s, "test_accuracy": v} for s, v in enumerate([0.91, 0.93, 0.93, 0.94, 0.94])]
  text = reproduce.markdown({"seeds": 5, "seconds": 1.0, "tasks": rows})
  assert "Found of a (x / y) - found of b (z / z): +1.00 [" in text
  rows[1]["report"]["config"] = {**rows[1]["report"]["config"], "model": {"name": "mlp"}}
  assert "Found of a" not in reproduce.markdown({"seeds": 5, "seconds": 1.0, "tasks": rows})


USER_TASK = '''"""Digits, a backbone of the user's own (two dense layers, one slot).

Written by the test: a tiny search and retrain.
"""
from flax import nnx

import actsearch
from actsearch.configs import base_config


@actsearch.register_model("test_reproduce_net")
class Net(nnx.Module):
  def __init__(self, *, input_shape, num_outputs, rngs):
    self.a = nnx.Linear(input_shape[-1], 8, rngs=rngs)
    self.b = nnx.Linear(8, num_outputs, rngs=rngs)

  def __call__(self, x):
    return self.b(actsearch.slot(self, "hidden", nnx.relu)(self.a(x)))


def get_config():
  c = base_config()
  c.data.name = "digits"
  c.model.name = "test_reproduce_net"
  c.search.epochs = 1
  c.search.candidates = ["relu", "tanh"]
  c.search.discretize = "argmax"
  c.retrain.epochs = 1
  c.retrain.baselines = ["relu", "gelu"]
  return c
'''


@pytest.mark.slow  # a chain: reproduce in this process, then resumed by a fresh one
def test_a_users_experiment_file_is_a_reproduce_task_and_resumes_in_a_fresh_process(
    tmp_path, monkeypatch):
  import json

  from conftest import run_cli
  task = tmp_path / "my_task.py"
  task.write_text(USER_TASK)
  workdir = tmp_path / "rp"
  calls = []  # each timed phase (the search, the relu seed) starts from empty caches
  for module, name in [(reproduce, "cold"), (reproduce.search, "run"),
                       (reproduce.retrain, "run")]:
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, real=real, name=name, **k: (
        calls.append(name if name == "cold" else f"{name}:{k.get('seeds')}"), real(*a, **k))[1])
  out = reproduce.run([str(task)], str(workdir), seeds=2, progress=False)
  assert calls == ["cold", "run:None", "cold", "run:1", "run:2"], calls
  row, = out["tasks"]
  assert row["task"] == "my_task"
  assert row["title"] == "Digits, a backbone of the user's own (two dense layers, one slot)."
  assert list(row["report"]["variants"]) == ["found", "relu", "gelu"]
  arch = json.loads((workdir / "my_task" / "search" / "architecture.json").read_text())
  assert arch["model"]["name"] == "test_reproduce_net" and arch["code"] == [str(task)]
  results = workdir / "my_task" / "retrain" / "results.json"
  before = json.loads(results.read_text())
  # a fresh process: nothing registered until the task's file is imported again
  proc = run_cli("reproduce", "--tasks", str(task), "--workdir", str(workdir), "--seeds", "2",
                 "--no-progress")
  assert proc.returncode == 0, proc.stderr
  assert "Digits, a backbone of the user's own" in proc.stdout
  assert proc.stdout.count("finished earlier, kept") == 3  # nothing trained again
  after = json.loads(results.read_text())  # rewritten (provenance), the same numbers
  assert after["variants"] == before["variants"] and after["summary"] == before["summary"]


@pytest.mark.parametrize("tasks, needle", [
    (["nope"], "unknown task(s) nope"),
    (["a/x.py", "b/x.py"], "names one task twice"),
])
def test_reproduce_refuses_unknown_and_twice_named_tasks(tasks, needle, tmp_path):
  with pytest.raises(reproduce.UserError) as err:
    reproduce.run(tasks, str(tmp_path))
  assert needle in str(err.value) and not os.listdir(tmp_path)
