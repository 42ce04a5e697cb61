"""The CIFAR experiments at their sizes, one and two devices, and a kill at a named step (the
slow tier: chains of processes, ResNet-20 and ViT-Ti compiled)."""

import json

import cifar_files
import jax
import numpy as np
import pytest

from conftest import assert_devices_agree, checkpoint_state, pause_and_kill, run_cli


# ViT-Ti's (340 s) outside CI (`make test-long`); the ViT's path at small sizes:
# tests/data/test_cifar.py
@pytest.mark.parametrize("experiment", [
    pytest.param("cifar10_resnet20", marks=pytest.mark.slow),
    pytest.param("cifar10_vit", marks=pytest.mark.long)])
def test_each_cifar_experiment_at_its_size_searches_one_epoch_and_retrains(experiment,
                                                                           tmp_path):
  # the files as distributed (Python 2 pickles, bytes keys), 40 random images in each
  files = tmp_path / "files"
  cifar_files.write(files, per_file=40, layout="py2")
  run = tmp_path / "run"
  # at the experiments' sizes (ResNet-20, ViT-Ti) with 4 and 2 candidates and one baseline:
  # the 16 and four baselines cost ResNet-20 6 minutes here and ViT-Ti 14 minutes and 11 GB,
  # mostly compiling (docs/cifar.md)
  vit = experiment == "cifar10_vit"
  cands = '["relu","gelu"]' if vit else '["relu","gelu","tanh","pau"]'
  more = ["--set", f"search.candidates={cands}", "--set", 'retrain.baselines=["gelu"]']
  proc = run_cli("search", "--config", f"experiments/{experiment}.py", "--workdir", str(run),
                 "--set", f"data.dir={files}", "--set", "retrain.batch_size=60", "--epochs", "1",
                 "--no-progress", *more, timeout=1200)
  assert proc.returncode == 0, proc.stderr
  arch = json.loads((run / "architecture.json").read_text())
  assert len(arch["layers"]) == (12 if vit else 19)
  assert len(arch["layers"][0]["scores"]) == (2 if vit else 4)
  proc = run_cli("retrain", str(run / "architecture.json"), "--epochs", "1", "--seeds", "1",
                 "--no-progress", timeout=1200)
  assert proc.returncode == 0, proc.stderr
  report = json.loads((run / "retrain" / "results.json").read_text())
  assert set(report["variants"]) == {"found", "gelu"}


SMALL = {"cifar10_resnet20": ["model.depth=8", "model.widths=[4,8,8]"],
         "cifar10_vit": ["model.depth=2", "model.dim=16", "model.heads=2", "model.mlp_dim=32",
                         "model.patch=8"]}
DARTS = ["search.strategy=darts", "search.epochs=2", "search.batch_size=16",
         "search.discretize=argmax", 'search.candidates=["relu","gelu","tanh"]']


def _sets(experiment, files):
  return [*SMALL[experiment], *DARTS, f"data.dir={files}"]


def _search(experiment, workdir, sets):
  return ["search", "--config", f"experiments/{experiment}.py", "--workdir", str(workdir),
          "--no-progress", *[a for s in sets for a in ("--set", s)]]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", list(SMALL))
def test_a_cifar_search_agrees_on_one_and_two_devices(experiment, tmp_path):
  files = tmp_path / "files"
  cifar_files.write(files, per_file=16)  # 80 training images: 40 train, 40 val
  sets = _sets(experiment, files) + ["data.val_fraction=0.5"]  # two steps of 16 an epoch
  states = {}
  for n in (1, 2):
    proc = run_cli(*_search(experiment, tmp_path / f"d{n}", sets),
                   env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"})
    assert proc.returncode == 0, proc.stderr
    states[n] = checkpoint_state(tmp_path / f"d{n}", sets, f"experiments/{experiment}.py")[0]
  assert int(states[1].step) == 4
  stats = assert_devices_agree(states[1], states[2])
  if experiment == "cifar10_resnet20":  # the running averages moved, and agree
    assert stats and not np.allclose(stats[1][...], 1.0)


@pytest.mark.slow
def test_a_resnet_search_killed_at_a_step_resumes_bit_identical(tmp_path):
  files = tmp_path / "files"
  cifar_files.write(files, per_file=16)
  sets = _sets("cifar10_resnet20", files) + ["data.val_fraction=0.5", "search.epochs=3",
                                             "search.checkpoint_every=2"]
  pause_and_kill(_search("cifar10_resnet20", tmp_path / "cut", sets), str(tmp_path / "marker"),
                 step=3)
  for where in ("cut", "whole"):
    proc = run_cli(*_search("cifar10_resnet20", tmp_path / where, sets))
    assert proc.returncode == 0, proc.stderr
  a, record_a = checkpoint_state(tmp_path / "cut", sets, "experiments/cifar10_resnet20.py")
  b, record_b = checkpoint_state(tmp_path / "whole", sets, "experiments/cifar10_resnet20.py")
  assert record_a == record_b
  assert int(a.step) == 6
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):  # weights, alpha, statistics
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  arch_a, arch_b = (json.loads((tmp_path / d / "architecture.json").read_text())
                    for d in ("cut", "whole"))
  assert arch_a["layers"] == arch_b["layers"] and arch_a["metrics"] == arch_b["metrics"]
