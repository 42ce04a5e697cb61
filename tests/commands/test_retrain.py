"""``actsearch retrain``: results files, paired baselines, resume by variant, seeds together,
old records, bad input."""

import json
import os

import numpy as np
import pytest
from flax import nnx
from tensorboard.backend.event_processing import event_accumulator

from actsearch import architecture, cli, configs, data, models, usercode
from actsearch.commands import retrain

from conftest import ROOT, assert_bad_input, pause_and_kill, run_cli

TINY = ["--set", "search.strategy=darts",
        "--set", "data.num_samples=600", "--set", "data.num_test=0",
        "--set", "search.discretize=argmax",
        "--set", "model.widths=[16,12]", "--set", "search.batch_size=32",
        "--set", "search.epochs=3",
        "--set", 'search.candidates=["default"]', "--no-progress"]
# 480 training examples, retrain batch 100 -> 4 steps an epoch.
RETRAIN = ["--seeds", "2", "--epochs", "1", "--baselines", "relu,gelu", "--no-progress"]


@pytest.fixture(scope="module")
def arch_path(tmp_path_factory):
  """The record of a one-epoch search."""
  workdir = tmp_path_factory.mktemp("search")
  assert cli.main(["search", "--config", os.path.join(ROOT, "experiments/mnist1d_mlp.py"),
                   "--workdir", str(workdir), "--epochs", "1", *TINY]) == 0
  return workdir / "architecture.json"


@pytest.fixture(scope="module")
def retrained(arch_path, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("retrain")
  assert cli.main(["retrain", str(arch_path), "--workdir", str(workdir), *RETRAIN]) == 0
  return workdir


def test_the_search_records_its_retrain_recipe_and_discretization(arch_path):
  arch = json.loads(arch_path.read_text())
  assert arch["discretize"] == "argmax"
  experiment = usercode.load_config(os.path.join(ROOT, "experiments/mnist1d_mlp.py"))
  assert arch["retrain"] == configs.to_json(experiment.retrain)
  assert arch["retrain"]["optimizer"] == "adamw"  # the experiment's own recipe, not the default


def test_results_json_names_the_architecture_and_both_baselines(arch_path, retrained):
  report = json.loads((retrained / "results.json").read_text())
  arch = json.loads(arch_path.read_text())
  assert list(report["variants"]) == ["found", "relu", "gelu"]
  assert report["found"] == " / ".join(layer["choice"] for layer in arch["layers"])
  for name, variant in report["variants"].items():
    assert [row["seed"] for row in variant["seeds"]] == [0, 1]
    for row in variant["seeds"]:
      assert 0.0 <= row["test_accuracy"] <= 1.0 and np.isfinite(row["test_loss"])
      assert row["train_loss"] > 0 and row["wall_time_s"] > 0
      assert row["param_count"] == 40 * 16 + 16 + 16 * 12 + 12 + 12 * 10 + 10
    accs = [row["test_accuracy"] for row in variant["seeds"]]
    assert report["summary"][name]["mean"] == pytest.approx(np.mean(accs))
  assert set(report["paired"]) == {"relu", "gelu"}
  found = [row["test_accuracy"] for row in report["variants"]["found"]["seeds"]]
  relu = [row["test_accuracy"] for row in report["variants"]["relu"]["seeds"]]
  assert report["paired"]["relu"]["mean_diff"] == pytest.approx(np.mean(found) - np.mean(relu))
  assert report["verdict"] in ("wins", "ties", "loses")
  assert report["best_baseline"] in ("relu", "gelu")
  assert report["metric"] == "test_accuracy"
  assert report["protocol"] == {"train_examples": 480, "test_examples": 120, "seeds": [0, 1]}
  prov = report["provenance"]
  assert {"actsearch", "jax", "jaxlib", "git_commit", "device_kind", "device_count"} <= set(prov)
  assert report["config"]["retrain"]["epochs"] == 1 and report["config"]["retrain"]["seeds"] == 2


def test_results_md_has_means_intervals_paired_differences_and_a_verdict(retrained):
  report = json.loads((retrained / "results.json").read_text())
  md = (retrained / "results.md").read_text()
  assert md.startswith(f"# Retrain: {report['found']}")
  s = report["summary"]["gelu"]
  assert (f"| gelu | {100 * s['mean']:.2f} | {100 * s['std']:.2f} | "
          f"[{100 * s['ci_low']:.2f}, {100 * s['ci_high']:.2f}] |") in md
  p = report["paired"]["relu"]
  assert f"| relu | {100 * p['mean_diff']:.2f} | [{100 * p['ci_low']:.2f}," in md
  assert f"**{report['verdict']}** against the best baseline, {report['best_baseline']}" in md


def test_tensorboard_reads_each_variant_and_seed(retrained):
  for variant in ("found", "relu", "gelu"):
    for seed in (0, 1):
      acc = event_accumulator.EventAccumulator(str(retrained / variant / f"seed{seed}"))
      acc.Reload()
      tags = set(acc.Tags()["scalars"])
      assert {"train/loss", "train/accuracy", "test/accuracy", "test/loss"} <= tags
      assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]


def test_weights_out_writes_every_trained_network_in_a_format_that_loads(arch_path, retrained,
                                                                        tmp_path):
  import jax

  import actsearch
  from actsearch.train import weights
  out = tmp_path / "weights"
  (out / "gelu" / "seed1").mkdir(parents=True)
  (out / "gelu" / "seed1" / "stale").write_text("from an earlier copy")
  # a finished retrain trains nothing again; the flag copies what it kept
  assert cli.main(["retrain", str(arch_path), "--workdir", str(retrained), *RETRAIN,
                   "--weights-out", str(out)]) == 0
  assert sorted(os.listdir(out)) == ["found", "gelu", "relu"]
  assert all(sorted(os.listdir(out / v)) == ["seed0", "seed1"] for v in os.listdir(out))
  assert not (out / "gelu" / "seed1" / "stale").exists()
  for variant, seed in (("gelu", 1), ("found", 0)):
    want = actsearch.trained(str(retrained), variant, seed)
    fresh = actsearch.trained(str(retrained), variant, 1 - seed)  # the other seed's weights
    got = weights.load_into(str(out / variant / f"seed{seed}"), fresh)
    for a, b in zip(jax.tree.leaves(nnx.state(got)), jax.tree.leaves(nnx.state(want))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_seeds_trained_together_equal_each_seed_alone(arch_path):
  arch = architecture.load(str(arch_path))
  cfg = retrain.config_from_architecture(arch, ["retrain.epochs=2"])
  splits = data.load(cfg.data, cfg.seed)
  slot = retrain.variants(arch, [])["found"]
  import tempfile
  with tempfile.TemporaryDirectory() as tmp:
    both = retrain.train_variant(cfg, splits, slot, tmp, "b", [0, 1], progress=False)
    alone = retrain.train_variant(cfg, splits, slot, tmp, "a", [1], progress=False)
  assert both["seeds"][0]["test_loss"] != pytest.approx(both["seeds"][1]["test_loss"], abs=1e-4)
  for key in ("test_loss", "train_loss", "test_accuracy"):
    assert both["seeds"][1][key] == pytest.approx(alone["seeds"][0][key], abs=1e-5), key


@pytest.mark.slow  # tests/test_kill.py kills a retrain at three moments
def test_a_killed_retrain_does_not_train_a_finished_variant_again(arch_path, tmp_path):
  workdir = tmp_path / "rt"
  args = ["retrain", str(arch_path), "--workdir", str(workdir), *RETRAIN]
  pause_and_kill(args, str(tmp_path / "paused"), step=4 + 2)  # inside the second variant
  assert (workdir / "found" / "result.json").exists()
  assert not (workdir / "relu" / "result.json").exists()
  assert not (workdir / "results.json").exists()
  kept = {p: p.read_bytes() for p in (workdir / "found").rglob("*") if p.is_file()}
  again = run_cli(*args)
  assert again.returncode == 0, again.stderr
  assert "found: finished earlier, kept" in again.stdout
  assert {p: p.read_bytes() for p in (workdir / "found").rglob("*") if p.is_file()} == kept
  report = json.loads((workdir / "results.json").read_text())
  assert list(report["variants"]) == ["found", "relu", "gelu"]


# A record as actsearch 0.1.0 wrote it before retrain existed: no "discretize", no "retrain".
OLD_RECORD = {
    "schema": "actsearch.architecture/v1",
    "candidates": ["relu", "gelu", "silu", "tanh", "sin", "elu", "softplus", "gaussian"],
    "relaxation": "softmax", "granularity": "layer",
    "layers": [{"name": "block0/act", "choice": "sin",
                "weights": {"relu": 0.1, "gelu": 0.1, "silu": 0.1, "tanh": 0.1, "sin": 0.3,
                            "elu": 0.1, "softplus": 0.1, "gaussian": 0.1}, "params": {}},
               {"name": "block1/act", "choice": "gaussian",
                "weights": {"relu": 0.1, "gelu": 0.1, "silu": 0.1, "tanh": 0.1, "sin": 0.1,
                            "elu": 0.1, "softplus": 0.1, "gaussian": 0.3}, "params": {}}],
    "model": {"name": "mlp", "widths": [16, 12]},
    "data": {"name": "mnist1d", "path": "", "num_samples": 600, "data_seed": 42,
             "val_fraction": 0.5, "task": "classification", "num_outputs": 10,
             "input_shape": [40], "train": 240, "val": 240, "test": 120},
    "metrics": {"val_loss": 2.2, "val_accuracy": 0.2}, "seed": 0, "actsearch_version": "0.1.0"}


def test_a_record_written_before_retrain_existed_loads_shows_and_retrains(tmp_path, capsys):
  path = tmp_path / "architecture.json"
  path.write_text(json.dumps(OLD_RECORD))
  assert cli.main(["show", str(path)]) == 0
  assert "block1/act  gaussian" in capsys.readouterr().out
  assert cli.main(["retrain", str(path), "--seeds", "1", "--epochs", "1", "--baselines",
                   "relu", "--no-progress"]) == 0
  report = json.loads((tmp_path / "retrain" / "results.json").read_text())
  assert report["found"] == "sin / gaussian"
  assert report["config"]["retrain"]["optimizer"] == configs.base_config().retrain.optimizer


def test_retrain_rebuilds_the_recorded_backbone():
  arch = json.loads(json.dumps(OLD_RECORD))
  cfg = retrain.config_from_architecture(arch, ["model.widths=[16,12]"])
  splits = data.load(cfg.data, cfg.seed)
  from flax import nnx
  model = models.build(cfg.model, splits.input_shape, splits.num_outputs,
                       retrain.variants(arch, [])["found"], nnx.Rngs(0))
  assert [(n, s.candidates[0].name) for n, s in models.slots(model)] == [
      ("block0/act", "sin"), ("block1/act", "gaussian")]


@pytest.fixture
def old_record(tmp_path):
  def write(**changes):
    rec = json.loads(json.dumps(OLD_RECORD))
    rec.update(changes)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(rec))
    return str(path)
  return write


@pytest.mark.parametrize("case", ["unregistered", "malformed", "no_data", "baseline", "seeds"])
def test_bad_input_is_one_line_and_exit_2(case, old_record, tmp_path, in_process):
  args = ["--no-progress"]
  if case == "unregistered":
    layers = json.loads(json.dumps(OLD_RECORD["layers"]))
    layers[0]["choice"] = "swishy"
    for layer in layers:
      layer["weights"]["swishy"] = 0.0
    path = old_record(layers=layers, candidates=[*OLD_RECORD["candidates"], "swishy"])
    needles = ["unknown candidate activation 'swishy'"]
  elif case == "malformed":
    path = str(tmp_path / "broken.json")
    with open(path, "w") as f:
      f.write('{"schema": "actsearch.architecture/v1", "layers": [')
    needles = ["malformed JSON"]
  elif case == "no_data":
    path = old_record(data={"name": "npz", "path": str(tmp_path / "gone.npz"),
                            "val_fraction": 0.5})
    needles = ["data file not found", "gone.npz"]
  elif case == "baseline":
    path = old_record()
    args += ["--baselines", "relu,swishy"]
    needles = ["unknown candidate activation 'swishy'"]
  else:
    path = old_record()
    args += ["--seeds", "0"]
    needles = ["--seeds must be a positive integer"]
  workdir = tmp_path / "rt"
  proc = in_process("retrain", path, "--workdir", workdir, *args)
  assert_bad_input(proc, *needles)
  assert not workdir.exists()


@pytest.mark.parametrize("init_params, slope", [("initial", 0.25), ("searched", 0.9)])
def test_init_params_says_where_the_found_networks_activation_parameters_start(init_params,
                                                                               slope):
  import ml_collections
  from flax import nnx

  from actsearch import models as backbones
  layer = {"name": "block0/act", "choice": "prelu", "weights": {"relu": 0.1, "prelu": 0.9},
           "params": {"prelu": {"slope": {"shape": [], "value": 0.9}}}}
  arch = {"layers": [layer], "candidates": ["relu", "prelu"], "code": [],
          "param_granularity": "layer"}
  slot = retrain.variants(arch, ["relu"], init_params)[retrain.FOUND]
  net = backbones.build(ml_collections.ConfigDict({"name": "mlp", "widths": [3]}), (4,), 2,
                        slot, nnx.Rngs(params=0))
  (_, act), = backbones.slots(net)
  assert float(act.p_prelu__slope[...]) == pytest.approx(slope)
