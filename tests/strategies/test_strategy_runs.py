"""Every strategy beside DARTS end to end from the command line on MNIST-1D: killed at a step
the test names and resumed, it ends bit-identical to an uninterrupted run; its record retrains
and shows like DARTS'."""

import json
import os

import pytest

from actsearch import architecture, cli
from actsearch.strategies import correlation

from conftest import ROOT, assert_bad_input, pause_and_kill, run_cli

# 240 train / 240 val examples; a short training is 1 epoch of 10 batches of 24 (240
# examples), checkpointed every 5 steps; the budget buys 4 networks, proposed 2 at a time
# (random, reinforce) or 1 after a population of 2 (evolution), so each run trains in several
# calls. Correlation: rounds of 1 epoch; random activation: 2 epochs of 10 steps (batch 24)
# checkpointed every 5, then its shortlist of one network.
PER = 1 * 10 * 24
SETS = ["data.num_samples=600", "data.num_test=0", "search.learning_curve=false",
        'search.candidates=["relu","tanh","gelu","sin"]', "model.widths=[16,12]",
        "search.shortlist_epochs=1", "search.shortlist_seeds=1", "retrain.batch_size=24",
        "retrain.checkpoint_every=5", f"search.budget={4 * PER}",
        "search.random.batch=2", "search.evolution.population=2",
        "search.evolution.sample=2", "search.reinforce.batch=2",
        "search.correlation.round_epochs=1", "search.correlation.rounds=2",
        "search.correlation.tolerance=0.0", "search.epochs=2", "search.batch_size=24",
        "search.checkpoint_every=5", "search.shortlist_k=1"]
KILL_AT = 17  # inside the second call, round or epoch, after its checkpoint at step 15
BLACK_BOX = ["random", "evolution", "reinforce"]
STRATEGIES = [*BLACK_BOX, "correlation", "correlation_switch", "random_activation"]


def _args(workdir, strategy):
  name, *form = strategy.split("_switch")
  extra = ["--set", "search.correlation.form=switch",
           "--set", "search.correlation.activation=relu"] if form else []
  return ["search", "--config", os.path.join(ROOT, "experiments/mnist1d_mlp.py"),
          "--workdir", str(workdir),
          "--no-progress", "--set", f"search.strategy={name}",
          *[a for s in SETS for a in ("--set", s)], *extra]


def _without_clocks(arch):
  arch = json.loads(json.dumps(arch))
  arch["strategy"]["cost"].pop("seconds")
  arch["selection"].pop("seconds")
  return arch


def _metrics(workdir):
  return [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # six strategies, each run whole, killed and resumed, and retrained
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_strategy_killed_mid_training_resumes_bit_identical(strategy, tmp_path, capsys):
  whole, cut = tmp_path / "whole", tmp_path / "cut"
  assert cli.main(_args(whole, strategy)) == 0  # uninterrupted, in this process
  pause_and_kill(_args(cut, strategy), str(tmp_path / "marker"), KILL_AT)
  proc = run_cli(*_args(cut, strategy))
  assert proc.returncode == 0, proc.stderr
  a = architecture.load(str(whole / "architecture.json"))
  b = architecture.load(str(cut / "architecture.json"))
  assert _without_clocks(a) == _without_clocks(b)
  name = strategy.split("_switch")[0]
  assert a["strategy"]["name"] == name and a["strategy"]["cost"]["examples"] > 0
  # retrain accepts the record; show prints it
  rc = cli.main(["retrain", str(whole / "architecture.json"), "--seeds", "1", "--epochs", "1",
                 "--baselines", "relu", "--no-progress"])
  assert rc == 0, capsys.readouterr().err
  assert cli.main(["show", str(whole / "architecture.json")]) == 0
  out = capsys.readouterr().out
  assert "Verdict" in out and (name if name != "random_activation" else "draw") in out
  if name in BLACK_BOX:
    _black_box_record(a, whole, cut, name)
  elif name == "correlation":
    rounds = a["selection"]["rounds"]
    assert _metrics(whole) == _metrics(cut)  # each round logged once, the same
    assert [m["correlation/val_score"] for m in _metrics(whole)] == \
        [r["val_score"] for r in rounds]
    assert all(set(r["r"]) == {"block0/act", "block1/act"} for r in rounds)
    last_r = rounds[-2]["r"]  # the last round trained with what the one before measured
    if "switch" in strategy:  # relu's r is about 0.86: sigmoid, which stays (settled)
      assert 2 <= len(rounds) <= 3
      assert [layer["choice"] for layer in a["layers"]] == \
          [correlation.switched(last_r[layer["name"]]) for layer in a["layers"]]
    else:
      assert len(rounds) == 3  # tolerance 0: never settled, every round run
      for layer in a["layers"]:
        w = last_r[layer["name"]] + 0.25  # w0 + gain r, gain 1
        assert layer["params"]["prelu"]["slope"]["value"] == pytest.approx(w, abs=1e-6)
      assert a["retrain"]["init_params"] == "searched" and a["retrain"]["act_lr_scale"] == 0
  else:
    assert a["relaxation"] == "draw" and a["selection"]["method"] == "pinned"
    assert a["selection"]["pinned"] == "every combination"  # 4^2 = 16 <= shortlist_max


def _black_box_record(a, whole, cut, strategy):
  assert (whole / "evaluations.json").read_text() == (cut / "evaluations.json").read_text()
  assert _metrics(whole) == _metrics(cut)  # the replayed networks logged once, the same
  assert a["relaxation"] is None
  cost = a["strategy"]["cost"]
  assert cost["trainings"] == 4 and cost["examples"] == 4 * PER == cost["budget"]
  sel = a["selection"]
  assert sel["method"] == strategy and len(sel["evaluated"]) == 4
  assert sel["proposals"] == 4 + sel["cached"]
  best = max(sel["evaluated"], key=lambda e: e["score"])
  assert {layer["name"]: layer["choice"] for layer in a["layers"]} == best["choices"]
  assert a["metrics"]["val_accuracy"] == best["score"]
  assert [r["step"] for r in _metrics(whole)] == [PER * i for i in range(1, 5)]


def test_a_black_box_strategys_bad_keys_are_one_line(tmp_path, in_process):
  mlp = os.path.join(ROOT, "experiments", "mlp.py")
  for sets, needle in ((["search.strategy=evolution", "search.evolution.population=0"],
                        "search.evolution.population"),
                       (["search.strategy=reinforce", "search.reinforce.baseline_decay=1.0"],
                        "below 1"),
                       (["search.strategy=random", "search.budget=-5"], "search.budget")):
    assert_bad_input(in_process("search", "--config", mlp, "--workdir", tmp_path / "w",
                                *[a for s in sets for a in ("--set", s)]), needle)
  assert not (tmp_path / "w").exists()
