"""The strategy seam: ``search.strategy`` names an entry of ``strategies.table``; a strategy of
a few lines, registered in an experiment file, runs end to end through the command line."""

import json
import os
import textwrap

import pytest

from actsearch import architecture, cli
from actsearch.strategies import darts, table

from conftest import ROOT, assert_bad_input

# A black-box strategy: two random architectures, each trained briefly by the shared trainer
# on the train split and scored on val; the better one is the record. It imports nothing of
# the commands.
TOY = textwrap.dedent('''
    import os

    import numpy as np
    from flax import nnx

    from actsearch import configs, models, usercode
    from actsearch.strategies import table
    from actsearch.strategies.base import Found, Strategy
    from actsearch.train import trainer
    from actsearch.train.objective import Objective


    def run(r):
      cfg, s = r.cfg, r.splits
      cands = list(cfg.search.candidates)
      rng = np.random.default_rng(cfg.seed)
      build = lambda slot: models.build(cfg.model, s.input_shape, s.num_outputs, slot,
                                        nnx.Rngs(params=cfg.seed))
      names = [n for n, _ in models.slots(build(models.uniform_slots(cands[0])))]
      nets = [{{n: cands[rng.integers(len(cands))] for n in names}} for _ in range(2)]
      built = [build(models.fixed_slots({{n: {{"choice": c}} for n, c in net.items()}}))
               for net in nets]
      graphdef, state = trainer.stack_models(built)
      recipe = cfg.retrain.copy_and_resolve_references()
      recipe.epochs = 1
      objective = Objective(graphdef, s.task)
      state, _ = trainer.fit(recipe, objective, state, s.x_train, s.y_train,
                             os.path.join(r.workdir, "toy"), [cfg.seed] * 2, ["a", "b"],
                             progress=False)
      acc = trainer.score(objective, state, s.x_val, s.y_val, 1000, "val")["val/accuracy"]
      best = nets[int(np.argmax(acc))]
      layers = [{{"name": n, "choice": best[n], "params": {{}},
                 "weights": {{c: float(c == best[n]) for c in cands}}}} for n in names]
      return Found(layers=layers, metrics={{"val_accuracy": float(np.max(acc))}},
                   fields={{"discretize": "toy", "selection": {{"method": "toy"}}}})


    table.register("toy", Strategy(run=run))


    def get_config():  # the MLP for one's own data; --set search.strategy=toy picks the toy
      return usercode.load_config({mlp!r})
''')


@pytest.fixture
def toy_experiment(tmp_path):
  path = tmp_path / "toy.py"
  path.write_text(TOY.format(mlp=os.path.join(ROOT, "experiments", "mlp.py")))
  yield str(path)
  table.STRATEGIES.remove("toy")


@pytest.mark.slow  # a search and a retrain (18 s); the seam's table and errors stay fast
def test_a_toy_strategy_runs_through_the_seam_end_to_end(tmp_path, toy_experiment,
                                                         classification_npz, capsys):
  workdir = tmp_path / "run"
  assert cli.main(["search", "--config", toy_experiment, "--workdir", str(workdir),
                   "--data", classification_npz, "--no-progress",
                   "--set", "search.strategy=toy",  # the toy stacks nets: no parameters
                   "--set", 'search.candidates=["default"]']) == 0
  arch = architecture.load(str(workdir / "architecture.json"))
  assert arch["strategy"]["name"] == "toy" and arch["discretize"] == "toy"
  assert arch["strategy"]["cost"]["seconds"] > 0
  assert [layer["name"] for layer in arch["layers"]] == ["block0/act", "block1/act"]
  for layer in arch["layers"]:
    assert layer["weights"][layer["choice"]] == 1.0
  assert (workdir / "toy").is_dir() and (workdir / "config.json").is_file()
  assert json.loads((workdir / "config.json").read_text())["search"]["strategy"] == "toy"
  # what the toy found retrains like any record
  assert cli.main(["retrain", str(workdir / "architecture.json"), "--seeds", "1", "--epochs",
                   "1", "--baselines", "relu", "--no-progress"]) == 0
  assert "Verdict" in capsys.readouterr().out


def test_darts_is_the_default_entry():
  assert table.get("darts") is darts.STRATEGY
  from actsearch import configs
  assert configs.base_config().search.strategy == "darts"


def test_an_unknown_strategy_is_one_line_and_exit_2(tmp_path, in_process):
  assert_bad_input(in_process("search", "--config", os.path.join(ROOT, "experiments", "mlp.py"),
                              "--workdir", tmp_path / "w", "--set",
                              "search.strategy=annealing"), "search.strategy", "darts")
  assert not (tmp_path / "w").exists()  # nothing written


def test_register_takes_only_strategies():
  from actsearch.errors import UserError
  with pytest.raises(UserError, match="Strategy"):
    table.register("bad", lambda r: None)
