"""``make compare``: each strategy's budget, the retrain key, the pairing against DARTS and
the table (on cells written here; the whole run is `make compare`, not part of the suite)."""

import pytest

from actsearch import configs, stats, usercode
from actsearch.commands import compare
from actsearch.errors import UserError
from actsearch.space import activations
from actsearch.strategies import blackbox, supernet, table

BUDGET = 100_000.0


@pytest.fixture(scope="module")
def base():
  return usercode.load_config(configs.experiment("compare_digits_mlp"))


def test_the_compared_strategies_are_those_with_a_budget_rule():
  assert compare.compared() == ("darts", "random", "evolution", "reinforce", "correlation",
                                "random_activation")


@pytest.mark.parametrize("strategy", compare.compared())
@pytest.mark.parametrize("scale", [1, 5])
def test_each_strategy_gets_its_budget(base, strategy, scale):
  cfg = compare.cell_config(base, strategy, scale, seed=2, budget=BUDGET, train_examples=719)
  s = cfg.search
  assert cfg.seed == 2 and s.strategy == strategy
  rule = table.get(strategy).budget
  if rule is supernet.budget:  # more epochs and, above 1x, the wider shortlist
    assert s.epochs == base.search.epochs * scale
    scaled = base.copy_and_resolve_references()
    scaled.search.epochs = s.epochs
    assert (s.shortlist_k, s.shortlist_max) == (
        supernet.wider_shortlist(scaled, scale, BUDGET) if scale > 1 else
        (base.search.shortlist_k, base.search.shortlist_max))
  elif rule is blackbox.spend:
    assert s.budget == scale * BUDGET
  else:  # correlation: rounds + 1 trainings of round_epochs spend about scale x the budget
    c = s.correlation
    per_epoch = (719 // cfg.retrain.batch_size) * cfg.retrain.batch_size
    spent = (c.rounds + 1) * c.round_epochs * per_epoch
    assert abs(spent - scale * BUDGET) <= (c.rounds + 1) * per_epoch / 2 or c.round_epochs == 1
  assert base.search.strategy == "darts" and base.seed == 0  # the base is not changed


@pytest.mark.parametrize("scale", [2, 5])
def test_the_wider_shortlist_is_the_widest_within_the_budget(base, scale):
  """DARTS at scale x: the estimate of its spend with the shortlist chosen is within scale x
  its 1x estimate, and one more candidate per slot would not be (or the space is exhausted)."""
  one = supernet.default_examples(supernet.setup(base.copy_and_resolve_references()))
  cfg = compare.cell_config(base, "darts", scale, 0, one)
  k, most = cfg.search.shortlist_k, cfg.search.shortlist_max
  assert k > base.search.shortlist_k and most >= k ** 2

  def estimate(k):
    c = cfg.copy_and_resolve_references()
    c.search.shortlist_k, c.search.shortlist_max = k, k ** 2
    return supernet.default_examples(supernet.setup(c))
  assert estimate(k) <= scale * one
  widest = len(activations.expand(list(base.search.candidates)))
  assert k == widest or estimate(k + 1) > scale * one


def test_an_unknown_strategy_or_task_is_refused(base, tmp_path):
  with pytest.raises(UserError):
    compare.cell_config(base, "annealing", 1, 0, BUDGET)
  for kwargs in ({"tasks": ["cifar"]}, {"tasks": ["digits_mlp"], "strategies": ["annealing"]},
                 {"tasks": ["digits_mlp"], "scales": [0]}, {"tasks": ["digits_mlp"], "seeds": 1},
                 {"tasks": ["digits_mlp"], "search_seeds": 0}):
    with pytest.raises(UserError):
      compare.run(workdir=str(tmp_path), **{"seeds": 5, **kwargs})
  assert not list(tmp_path.iterdir())  # nothing written


def _arch(choices, seed=0, scores=None, init="initial", params=None):
  return {"layers": [{"name": f"l{i}", "choice": c, "scores": scores or {},
                      "params": (params or {}).get(c, {})} for i, c in enumerate(choices)],
          "model": {"name": "mlp"}, "data": {"name": "digits"}, "seed": seed,
          "retrain": {"epochs": 10, "init_params": init}}


def test_a_network_found_twice_is_retrained_once():
  key = compare.retrain_key(_arch(["relu", "gelu"]))
  assert compare.retrain_key(_arch(["relu", "gelu"], seed=3, scores={"relu": 0.9})) == key
  assert compare.retrain_key(_arch(["gelu", "relu"])) != key
  # learned parameters count where the recipe starts from them
  a = _arch(["prelu"], params={"prelu": {"slope": 0.1}})
  b = _arch(["prelu"], params={"prelu": {"slope": 0.3}})
  assert compare.retrain_key(a) == compare.retrain_key(b)
  a["retrain"]["init_params"] = b["retrain"]["init_params"] = "searched"
  assert compare.retrain_key(a) != compare.retrain_key(b)


def _cell(strategy, scale, seed, values, found="relu / gelu"):
  return {"strategy": strategy, "scale": scale, "seed": seed, "found": found,
          "cost": {"examples": 1e5 * scale, "trainings": 10.0 * scale}, "retrain": "k",
          "search_seconds": 5.0, "metric": "test_accuracy", "test": dict(enumerate(values))}


BASE = [0.90, 0.92, 0.91, 0.93, 0.94]


def test_the_difference_is_paired_by_search_seed_and_retrain_seed():
  cells = []
  for seed in range(3):
    darts = [v + 0.01 * seed for v in BASE]
    cells += [_cell("darts", 1, seed, darts),
              _cell("random", 1, seed, [v - 0.02 + 0.001 * i for i, v in enumerate(darts)]),
              _cell("darts", 5, seed, darts)]
  cells.append(_cell("evolution", 5, 0, BASE))  # one search seed only
  rows = {(r["strategy"], r["scale"]): r for r in compare.rows(cells, [1, 5])}
  assert set(rows) == {("darts", 1), ("random", 1), ("darts", 5), ("evolution", 5)}
  rnd = rows[("random", 1)]
  assert rnd["search_seeds"] == [0, 1, 2] and rnd["summary"]["n"] == 15
  want = stats.paired([-0.02 + 0.001 * i for _ in range(3) for i in range(5)], [0.0] * 15)
  assert rnd["paired"]["mean_diff"] == pytest.approx(-0.018)
  assert rnd["paired"]["ci_low"] == pytest.approx(want["ci_low"])
  assert rnd["paired"]["ci_high"] < 0  # worse than DARTS on every pair
  assert rows[("darts", 1)]["paired"] is None
  assert rows[("evolution", 5)]["paired"]["mean_diff"] == pytest.approx(0.0)
  assert rows[("evolution", 5)]["paired"]["n"] == 5
  assert rows[("darts", 5)]["examples"] == pytest.approx(5e5)


def test_the_table_has_a_row_per_strategy_and_budget():
  cells = [_cell("darts", 1, 0, BASE), _cell("reinforce", 1, 0, [v + 0.01 for v in BASE],
                                              found="sin / tanh")]
  out = {"seeds": 5, "scales": [1, 5], "seconds": 60.0, "tasks": {
      "digits_mlp": {"title": "Digits", "experiment": "compare_digits_mlp", "cells": cells}}}
  text = compare.markdown(out)
  lines = text.splitlines()
  assert any(line.startswith("## Digits") and "1 search seed)" in line for line in lines)
  row = next(line for line in lines if line.startswith("| reinforce"))
  assert "| 1x | 0.10M | 10 | 5 | 0: sin / tanh |" in row
  assert row.endswith("| +1.00 [+1.00, +1.00] |")
  assert next(line for line in lines if line.startswith("| darts")).endswith("|  |")


def test_a_cell_is_the_experiment_with_set_overrides(base):
  """The cell's process gets the experiment file and ``--set`` for each changed field; applied
  to the experiment's config they give the cell's config back."""
  cfg = compare.cell_config(base, "evolution", 5, 1, BUDGET)
  sets = compare.overrides(base, cfg)
  assert sorted(s.split("=")[0] for s in sets) == ["search.budget", "search.strategy", "seed"]
  again = base.copy_and_resolve_references()
  configs.apply_overrides(again, sets)
  assert configs.to_json(again) == configs.to_json(cfg)
