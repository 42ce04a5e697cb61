"""``actsearch yardstick``: the truth of a task, methods scored against it, resumed."""

import json

import pytest

from actsearch.train import trainer

from conftest import assert_bad_input

SETS = ["data.num_samples=600", "data.num_test=0", "model.widths=[8]", "retrain.epochs=2",
        "retrain.batch_size=60", 'search.candidates=["relu","tanh","sin"]']


def _run(in_process, workdir, methods="race_short", sets=SETS):
  return in_process("yardstick", "mnist1d_mlp", "--workdir", workdir, "--methods", methods,
                    "--no-progress", *[a for s in sets for a in ("--set", s)])


@pytest.mark.slow
def test_the_yardstick_scores_a_method_against_the_truth_and_resumes(tmp_path, in_process,
                                                                    monkeypatch):
  proc = _run(in_process, tmp_path)
  assert proc.returncode == 0, proc.stderr
  out = json.loads((tmp_path / "yardstick.json").read_text())
  t = out["truth"]
  assert t["seeds"] == list(range(1000, 1006)) and t["folds"] == 1
  assert set(t["mean"]) == {"relu", "tanh", "sin"} and t["best"] == max(t["mean"],
                                                                        key=t["mean"].get)
  assert all(len(v) == 6 for v in t["per_seed"].values()) and t["seconds"] > 0
  assert -1.0 <= t["agreement"] <= 1.0 and set(t["truth4000"]) == set(t["mean"])
  m = out["methods"]["race_short"]
  assert -1.0 <= m["spearman"] <= 1.0 and len(m["top3"]) == 3
  assert m["best_in_top3"] is (t["best"] in m["top3"])
  # the race's 3 networks for one cycle of 5 epochs of the 240 train examples, against one
  # retrain seed's 2 epochs of train + val's 480
  assert m["examples"] == 3 * 5 * 240 and m["examples_in_seeds"] == 3 * 5 * 240 / (2 * 480)
  assert m["seconds"] > 0 and m["seconds_in_seeds"] > 0
  md = (tmp_path / "yardstick.md").read_text()
  assert "| race_short |" in md and "Its own agreement" in md
  # run again: the truth read back (no training of it), the race resumed from its checkpoints
  calls, real = [], trainer.fit

  def fit(*args, **kwargs):
    calls.append(kwargs.get("key"))
    return real(*args, **kwargs)
  monkeypatch.setattr(trainer, "fit", fit)
  assert _run(in_process, tmp_path).returncode == 0 and calls == ["race/cycle1"]
  assert json.loads((tmp_path / "yardstick.json").read_text())["truth"]["mean"] == t["mean"]


def test_an_unknown_method_is_one_line_and_exit_2(tmp_path, in_process):
  assert_bad_input(_run(in_process, tmp_path, methods="weights,oracle"),
                   "unknown method 'oracle'; known: weights")
