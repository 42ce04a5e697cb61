"""`actsearch bench --cases loop,retrain` writes the whole-run figures (no timing asserted)."""

import json

import pytest

from actsearch import cli

LOOP = {"search_step_alone_ms", "search_loop_ms_per_step", "search_loop_over_alone_rate"}
RETRAIN = {"retrain_step_alone_ms", "retrain_loop_ms_per_step", "retrain_loop_over_alone_rate",
           "retrain_one_seed_s", "retrain_five_seeds_s", "retrain_per_seed_over_one",
           "retrain_seed0_max_abs_diff"}


@pytest.mark.slow  # two short runs of the default experiment and its retrain
def test_loop_and_retrain_cases_write_their_figures(tmp_path, capsys):
  out = tmp_path / "bench.json"
  assert cli.main(["bench", "--cases", "loop,retrain", "--repeats", "2", "--epochs", "2",
                   "--rounds", "2", "--out", str(out)]) == 0
  results = json.loads(out.read_text())["results"]
  assert LOOP <= set(results["loop"]) and RETRAIN <= set(results["retrain"])
  loop, retrain = results["loop"], results["retrain"]
  for name, figures in (("search", loop), ("retrain", retrain)):  # the median of two rounds
    low, high = figures[f"{name}_loop_over_alone_rate_min"], figures[
        f"{name}_loop_over_alone_rate_max"]
    assert 0 < low <= figures[f"{name}_loop_over_alone_rate"] <= high
  assert retrain["retrain_per_seed_over_one"] > 0
  # Seed 0 trained within five equals seed 0 trained alone.
  assert retrain["retrain_seed0_max_abs_diff"] < 1e-4  # after two epochs
  table = capsys.readouterr().out
  assert "search_loop_over_alone_rate" in table and ">= 0.9" in table


def test_bench_epochs_below_two_are_refused(capsys):
  assert cli.main(["bench", "--cases", "loop", "--epochs", "1"]) == 2
  assert "--epochs >= 2" in capsys.readouterr().err
