"""CIFAR from local files: every layout the files come in, the restricted unpickler, the
inputs made on the device (normalisation, crop and flip keyed by example and epoch), and a
search and retrain of a ResNet and a ViT on files the test writes."""

import json
import os
import pickle
import subprocess
import sys

import cifar_files
import numpy as np
import pytest

from actsearch import data
from actsearch.data import cifar
from actsearch.data.inputs import IDENTITY, Inputs, for_images
from actsearch.errors import UserError

from conftest import ROOT, assert_bad_input


@pytest.mark.parametrize("layout", cifar_files.LAYOUTS)
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_every_layout_reads_as_written(name, layout, tmp_path):
  written = cifar_files.write(tmp_path, name, per_file=6, layout=layout, test=4)
  for where in (str(tmp_path), written["dir"]):  # the parent or the folder itself
    got = cifar.load(name, where)
    for k in ("x_train", "y_train", "x_test", "y_test"):
      np.testing.assert_array_equal(got[k], written[k])
  assert got["x_train"].shape == (6 * len(cifar_files.FILES[name][1]), 32, 32, 3)
  assert got["x_train"].dtype == np.uint8
  # channels last: pixel (row 0, column 1) of image 0 is byte 1 (red), 1025 (green), 2049
  raw = pickle.loads(open(os.path.join(written["dir"], cifar_files.FILES[name][2]), "rb").read(),
                     encoding="bytes")
  flat = raw[b"data"] if b"data" in raw else raw["data"]
  assert list(got["x_test"][0, 0, 1]) == [flat[0, 1], flat[0, 1025], flat[0, 2049]]


def test_the_splits_keep_the_pixels_and_say_how_to_read_them(tmp_path):
  cifar_files.write(tmp_path, per_file=10)
  cfg = {"name": "cifar10", "dir": str(tmp_path), "augment": "crop_flip", "val_fraction": 0.2}
  import ml_collections
  splits = data.load(ml_collections.ConfigDict(cfg), seed=0)
  assert splits.x_train.dtype == np.uint8 and len(splits.x_train) == 40
  assert len(splits.x_val) == 10 and splits.num_outputs <= 10 and splits.task == "classification"
  assert splits.inputs.crop == 4 and splits.inputs.flip and splits.inputs.scale == 1 / 255
  whole = np.concatenate([splits.x_train, splits.x_val]).astype(np.float64) / 255
  np.testing.assert_allclose(splits.inputs.mean, whole.reshape(-1, 3).mean(0), atol=1e-12)
  np.testing.assert_allclose(splits.inputs.std, whole.reshape(-1, 3).std(0), atol=1e-9)
  assert splits.describe()["inputs"]["crop"] == 4


class _Runs:
  """Unpickling it would create a file (the code a hostile pickle carries)."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, "w"))


@pytest.mark.parametrize("payload", ["open", "os.system", "object array", "eval"])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(payload, tmp_path, in_process):
  marker = tmp_path / "ran"
  cifar_files.write(tmp_path, per_file=4)
  target = tmp_path / "cifar-10-batches-py" / "data_batch_3"
  if payload == "open":
    raw = pickle.dumps({b"data": _Runs(str(marker)), b"labels": [0]}, protocol=2)
  elif payload == "object array":
    raw = pickle.dumps({b"data": np.array([_Runs(str(marker)), 1], dtype=object),
                        b"labels": [0, 1]}, protocol=2)
  else:  # hand-written: a global, its argument, a call
    fn = b"os\nsystem\n" if payload == "os.system" else b"builtins\neval\n"
    arg = f"touch {marker}" if payload == "os.system" else f"open({str(marker)!r}, 'w')"
    raw = b"\x80\x02c" + fn + b"X" + len(arg).to_bytes(4, "little") + arg.encode() + b"\x85R."
  target.write_bytes(raw)
  proc = in_process("search", "--config", "experiments/cifar10_resnet20.py", "--workdir",
                    tmp_path / "run", "--set", f"data.dir={tmp_path}")
  assert_bad_input(proc, "data_batch_3", "not a CIFAR python-pickle file")
  assert not marker.exists()
  assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize("case, needle", [
    ("no data.dir", "pass --set data.dir=PATH"),
    ("a missing folder", "is not a folder"),
    ("a folder without the files", "holds no cifar10 files"),
    ("a training file missing", "lacks data_batch_5"),
    ("an unknown augmentation", "data.augment must be one of none, crop_flip"),
])
def test_a_missing_or_malformed_directory_exits_2_with_one_line(case, needle, tmp_path,
                                                                 in_process):
  sets = {"no data.dir": "data.dir=", "a missing folder": f"data.dir={tmp_path / 'nowhere'}",
          "a folder without the files": f"data.dir={tmp_path}"}.get(case,
                                                                    f"data.dir={tmp_path}")
  if case in ("a training file missing", "an unknown augmentation"):
    cifar_files.write(tmp_path, per_file=4)
  if case == "a training file missing":
    os.unlink(tmp_path / "cifar-10-batches-py" / "data_batch_5")
  more = ["--set", "data.augment=mixup"] if case == "an unknown augmentation" else []
  proc = in_process("search", "--config", "experiments/cifar10_resnet20.py", "--workdir",
                    tmp_path / "run", "--set", sets, *more)
  assert_bad_input(proc, needle)


# --- the inputs: normalisation and augmentation on the device ---------------------------------

AUG = Inputs(scale=1 / 255, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), crop=4, flip=True,
             seed=0)


def _images(n=8, side=8, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_normalisation_is_per_channel_and_identity_passes_floats():
  x = _images()
  got = np.asarray(AUG.normalise(x))
  want = (x / 255.0 - np.array(AUG.mean)) / np.array(AUG.std)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  floats = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(IDENTITY(floats, np.arange(4), np.zeros(4))), floats)


def test_an_examples_augmentation_depends_on_its_index_and_epoch_alone():
  x = _images(n=8)
  idx, epoch = np.arange(100, 108), np.full(8, 3)
  whole = np.asarray(AUG.augment(x, idx, epoch))
  # split as two devices would split the batch, and in another order: the same images
  halves = np.concatenate([np.asarray(AUG.augment(x[:4], idx[:4], epoch[:4])),
                           np.asarray(AUG.augment(x[4:], idx[4:], epoch[4:]))])
  np.testing.assert_array_equal(halves, whole)
  perm = np.random.default_rng(1).permutation(8)
  np.testing.assert_array_equal(np.asarray(AUG.augment(x[perm], idx[perm], epoch[perm])),
                                whole[perm])
  assert not np.array_equal(np.asarray(AUG.augment(x, idx, epoch + 1)), whole)  # next epoch


def test_a_crop_is_a_shifted_window_of_the_padded_image_maybe_flipped():
  x = _images(n=64, side=8)
  out = np.asarray(AUG.augment(x, np.arange(64), np.zeros(64)))
  shifts, flips = set(), 0
  for img, got in zip(x, out):
    padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))
    found = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (0, 1)
             if np.array_equal((got[:, ::-1] if f else got), padded[dy:dy + 8, dx:dx + 8])]
    assert found, "not a window of the padded image"
    shifts.add(found[0][:2])
    flips += found[0][2]
  assert len(shifts) > 10 and 12 < flips < 52


def test_a_training_pass_augments_and_an_evaluation_does_not():
  import ml_collections

  from actsearch import models
  from actsearch.models import network
  from actsearch.models.network import split_model
  from actsearch.train.objective import Objective

  cfg = ml_collections.ConfigDict({"name": "cnn2d", "widths": [4], "dense": 8})
  model = models.build(cfg, (8, 8, 3), 10, models.uniform_slots("relu"), network.rngs(0))
  graphdef, params, arch, rest = split_model(model)
  obj = Objective(graphdef, "classification", inputs=AUG)
  x, y = _images(n=4), np.arange(4)
  plain = {"x": x, "y": y}
  indexed = {**plain, "i": np.arange(4), "epoch": np.zeros(4, np.int32)}
  loss = lambda b, train: float(obj(params, arch, rest, b, train=train)[0])  # noqa: E731
  assert loss(indexed, True) != loss(plain, True)  # augmented
  assert loss(indexed, False) == loss(plain, False)
  sums = obj.sums(params, arch, rest, indexed, np.ones(4))
  assert float(sums["loss"]) == pytest.approx(4 * loss(plain, False), rel=1e-5)


def test_an_examples_augmentation_is_the_same_on_one_and_two_devices():
  script = """
import jax, numpy as np
from actsearch.data.inputs import Inputs
aug = Inputs(scale=1 / 255, mean=(0.5,) * 3, std=(0.2,) * 3, crop=4, flip=True)
x = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
i, e = np.arange(8, 16), np.full(8, 2)
sharded = jax.pmap(aug.augment)(x.reshape(2, 4, 8, 8, 3), i.reshape(2, 4), e.reshape(2, 4))
print(int(np.array_equal(np.asarray(sharded).reshape(x.shape), np.asarray(aug.augment(x, i, e)))),
      jax.device_count())
"""
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
  assert out.stdout.split() == ["1", "2"], out.stderr


def test_for_images_reads_the_statistics_of_the_training_images():
  x = _images(n=50, side=4)
  inputs = for_images(x, "none")
  assert not inputs.augments
  normed = np.asarray(inputs.normalise(x))
  np.testing.assert_allclose(normed.reshape(-1, 3).mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(normed.reshape(-1, 3).std(0), 1, atol=1e-4)


# --- the backbones on CIFAR files, end to end ----------------------------------------------------

SMALL = {"cifar10_resnet20": ["model.depth=8", "model.widths=[4,4,8]"],
         "cifar10_vit": ["model.depth=1", "model.dim=16", "model.heads=2", "model.mlp_dim=16",
                         "model.patch=8"]}


# the ViT's (its slots and modes: tests/models/test_vit.py) at ViT-Ti size in the slow tier
@pytest.mark.parametrize("experiment", [
    "cifar10_resnet20", pytest.param("cifar10_vit", marks=pytest.mark.slow)])
def test_a_one_epoch_search_of_each_cifar_experiment_retrains(experiment, tmp_path, in_process):
  cifar_files.write(tmp_path / "files", per_file=12, layout="py2")
  sets = [*SMALL[experiment], f"data.dir={tmp_path / 'files'}", "retrain.batch_size=18",
          'search.candidates=["relu","gelu"]', 'retrain.baselines=["relu"]']
  run = tmp_path / "run"
  proc = in_process("search", "--config", f"experiments/{experiment}.py", "--workdir", run,
                    "--epochs", "1", "--no-progress", *[a for s in sets for a in ("--set", s)])
  assert proc.returncode == 0, proc.stderr
  arch = json.loads((run / "architecture.json").read_text())
  race = json.loads((run / "race.json").read_text())
  assert [g["epochs"] for g in race["cycles"]] == [1, 1]  # --epochs caps each cycle
  assert arch["data"]["dir"] == str(tmp_path / "files") and arch["data"]["train"] == 54
  proc = in_process("retrain", run / "architecture.json", "--epochs", "1", "--seeds", "1",
                    "--no-progress")
  assert proc.returncode == 0, proc.stderr
  result = json.loads((run / "retrain" / "found" / "result.json").read_text())
  assert 0.0 <= result["seeds"][0]["test_accuracy"] <= 1.0
  # the same workdir with other cycles is refused
  proc = in_process("search", "--config", f"experiments/{experiment}.py", "--workdir", run,
                    "--epochs", "2", *[a for s in sets for a in ("--set", s)])
  assert_bad_input(proc, "cycles of [1, 1] epochs, not [2, 2]")


def test_the_reader_refuses_a_file_that_is_no_cifar_dict(tmp_path):
  cifar_files.write(tmp_path, per_file=4)
  (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps([1, 2], 2))
  with pytest.raises(UserError, match="holds a list, not a dict"):
    cifar.load("cifar10", str(tmp_path))
