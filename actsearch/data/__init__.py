"""Datasets -> train / val / test splits (numpy), and the example order of an epoch.

The search sees only ``train`` (weights) and ``val`` (alpha); ``test`` is kept for
retraining and reporting. Labels decide the task: integer labels are classification
(cross-entropy), float targets are regression (mean squared error).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import os
import tempfile
import zipfile

import ml_collections
import numpy as np

from actsearch import cache
from actsearch.data import cifar, datasets
from actsearch.data.inputs import AUGMENTS, IDENTITY, Inputs, for_images
from actsearch.errors import UserError

CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclasses.dataclass(frozen=True)
class Splits:
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  task: str
  num_outputs: int
  loss: str = "auto"  # data.loss: what training minimises (train/losses.py)
  inputs: Inputs = IDENTITY  # how stored examples become inputs (inputs.py); x as stored

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.x_train.shape[1:])

  def describe(self) -> dict:
    out = {"task": self.task, "num_outputs": self.num_outputs,
           "input_shape": list(self.input_shape), "train": len(self.x_train),
           "val": len(self.x_val), "test": len(self.x_test)}
    if self.inputs != IDENTITY:
      out["inputs"] = self.inputs.describe()
    return out


def mnist1d(num_samples: int = 5000, seed: int = 42, num_test: int = 0) -> dict[str, np.ndarray]:
  """MNIST-1D (Greydanus 2020), generated offline by ``mnist1d.data.make_dataset``.

  With ``num_test == 0``, ``num_samples`` examples split 80/20 into train and test (the
  generator's own split); otherwise ``num_samples`` training examples and ``num_test`` more
  for the test split, from one generated set of ``num_samples + num_test``. Generated once
  per process and arguments (18,000 examples take seconds); callers get copies.
  """
  return {k: v.copy() for k, v in _mnist1d(int(num_samples), int(seed), int(num_test)).items()}


@functools.lru_cache(maxsize=4)
def _mnist1d(num_samples: int, seed: int, num_test: int) -> dict[str, np.ndarray]:
  """The generated arrays, from the machine's cache when an earlier process generated them
  (``_cached``; the key is the arguments and the package's version, whose generator defaults
  are fixed: importing ``mnist1d`` alone takes 2 s, so it is imported only to generate)."""

  def generate():
    from mnist1d import data as m1d  # it pulls in requests and pickle helpers

    args = m1d.get_dataset_args()
    args.num_samples = int(num_samples) + int(num_test)
    args.seed = int(seed)
    if num_test:
      args.train_split = 1.0
    state = np.random.get_state()  # make_dataset reseeds numpy's global generator
    try:
      ds = m1d.make_dataset(args)
    finally:
      np.random.set_state(state)
    if num_test:
      n = int(num_samples)
      return {"x_train": ds["x"][:n], "y_train": ds["y"][:n], "x_test": ds["x"][n:],
              "y_test": ds["y"][n:]}
    return {"x_train": ds["x"], "y_train": ds["y"], "x_test": ds["x_test"],
            "y_test": ds["y_test"]}
  return _cached("mnist1d", {"num_samples": num_samples, "seed": seed, "num_test": num_test},
                 generate)


def _cached(kind: str, key: dict, generate) -> dict[str, np.ndarray]:
  """``generate()``'s arrays, kept in the machine's cache (``actsearch/cache.py``) as an
  ``.npz`` named by a hash of ``key`` and the generator's version: MNIST-1D's 18,000 examples
  take 9 s to generate and 10 ms to read, and every command of a run (search, export,
  retrain, reproduce) needs them. A cached file is read as plain arrays (never unpickled)
  and checked; one that is missing, unreadable or damaged is generated again. A cache that
  cannot be written leaves the arrays uncached."""
  version = importlib.metadata.version(kind)
  digest = hashlib.sha256(json.dumps([version, key], sort_keys=True, default=str).encode())
  name = f"{kind}-{digest.hexdigest()[:20]}.npz"
  found = cache.find(name)
  if found is not None:
    try:
      with np.load(found, allow_pickle=False) as f:
        arrays = {k: f[k] for k in _REQUIRED}
      if all(len(arrays[f"x_{s}"]) == len(arrays[f"y_{s}"]) for s in ("train", "test")):
        return arrays
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
      pass
  arrays = generate()
  try:  # a temporary file and a rename: a concurrent reader never sees half a file
    directory = cache.writable_dir()
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
      with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
      os.replace(tmp, directory / name)
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)
  except OSError:
    pass
  return arrays


def digits(seed: int = 0, images: bool = False) -> dict[str, np.ndarray]:
  """scikit-learn's 8x8 digits (shipped with the package), 80/20 train/test, scaled to [0, 1];
  64 features each, or (``images``) 8x8x1 images, height, width, channels."""
  from sklearn.datasets import load_digits

  d = load_digits()
  perm = np.random.default_rng(seed).permutation(len(d.target))
  x, y = d.data[perm] / 16.0, d.target[perm]
  if images:
    x = x.reshape(len(x), 8, 8, 1)
  cut = int(0.8 * len(y))
  return {"x_train": x[:cut], "y_train": y[:cut], "x_test": x[cut:], "y_test": y[cut:]}


_REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def save_arrays(arrays: dict, path: str) -> str:
  """The user's arrays from Python (``x_train, y_train, x_test, y_test`` and optionally
  ``x_val, y_val``; any array-likes) checked and written as the ``.npz`` file a run reads, so
  that commands in a fresh process find them. Returns ``path``."""
  if not isinstance(arrays, dict):
    raise UserError(f"data must be a dict of arrays, got {type(arrays).__name__}")
  _check_names(arrays, "data")
  try:
    plain = {k: np.asarray(v) for k, v in arrays.items()}
  except (TypeError, ValueError) as e:
    raise UserError(f"data: not arrays ({e})") from None
  if any(v.dtype == object for v in plain.values()):
    raise UserError("data: arrays must be numeric, not objects")
  _check(plain, _task(plain), "data")
  if os.path.exists(path):  # a run's data: the same arrays resume, others are refused
    held = load_npz(path)
    if set(held) != set(plain) or not all(np.array_equal(held[k], plain[k]) for k in plain):
      raise UserError(f"{path} holds other data (a run's); use another workdir")
    return path
  tmp = f"{path}.tmp.npz"
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  np.savez(tmp, **plain)
  os.replace(tmp, path)
  return path


def load_npz(path: str) -> dict[str, np.ndarray]:
  """The user's data: ``x_train, y_train, x_test, y_test`` and optionally ``x_val, y_val``."""
  if not os.path.isfile(path):
    raise UserError(f"data file not found: {path}")
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: np.asarray(f[k]) for k in f.files}
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise UserError(f"{path} is not a readable .npz file ({type(e).__name__}: {e})") from None
  _check_names(arrays, path, others=True)
  return {k: arrays[k] for k in (*_REQUIRED, "x_val", "y_val") if k in arrays}


TASKS = ("auto", CLASSIFICATION, REGRESSION)


def _task(arrays: dict[str, np.ndarray], stated: str = "auto") -> str:
  """``data.task`` where the user states it; ``auto``: integer labels mean classification,
  float targets regression."""
  if stated not in TASKS:
    raise UserError(f"data.task must be one of {', '.join(TASKS)}, got {stated!r}")
  if stated == CLASSIFICATION:
    y = [arrays[k] for k in arrays if k.startswith("y_")]
    if not all(np.all(np.asarray(v) == np.round(np.asarray(v))) for v in y):
      raise UserError("data.task is classification but the labels are not whole numbers")
    return CLASSIFICATION
  if stated == REGRESSION:
    return REGRESSION
  kinds = {arrays[k].dtype.kind for k in arrays if k.startswith("y_")}
  if kinds <= {"i", "u"}:
    return CLASSIFICATION
  if kinds <= {"f"}:
    return REGRESSION
  raise UserError("labels must all be integers (classification) or all floats (regression), "
                  f"got dtype kinds {sorted(kinds)}")


def _check(arrays: dict[str, np.ndarray], task: str, source: str) -> None:
  for split in ("train", "val", "test"):
    if f"x_{split}" not in arrays:
      continue
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.dtype.kind not in "fiub":
      raise UserError(f"{source}: x_{split} must be numeric, got dtype {x.dtype}")
    if x.ndim < 2 or len(x) == 0:
      raise UserError(f"{source}: x_{split} must have shape [examples, features...], "
                      f"got {list(x.shape)}")
    if len(y) != len(x):
      raise UserError(f"{source}: x_{split} has {len(x)} examples but y_{split} has {len(y)}")
    if task == CLASSIFICATION and (y.ndim != 1 or (y < 0).any()):
      raise UserError(f"{source}: y_{split} must be a vector of class indices >= 0")
    if task == REGRESSION and y.ndim > 2:
      raise UserError(f"{source}: y_{split} must have shape [examples] or [examples, outputs]")
    if not np.isfinite(x).all() or (task == REGRESSION and not np.isfinite(y).all()):
      raise UserError(f"{source}: {split} split holds NaN or infinite values")
  shapes = {arrays[k].shape[1:] for k in arrays if k.startswith("x_")}
  if len(shapes) != 1:
    raise UserError(f"{source}: the x arrays disagree in shape: {sorted(map(list, shapes))}")
  if task == REGRESSION:
    out = {1 if arrays[k].ndim == 1 else arrays[k].shape[1] for k in arrays if k.startswith("y_")}
    if len(out) != 1:
      raise UserError(f"{source}: the y arrays disagree in their number of outputs")


def make_splits(arrays: dict[str, np.ndarray], val_fraction: float, seed: int,
                source: str, task: str = "auto", inputs: Inputs = IDENTITY) -> Splits:
  """Validates the arrays and, without ``x_val``, splits train into train and val. The x
  arrays become float32, or stay as stored where ``inputs`` says how to read them."""
  task = _task(arrays, task)
  _check(arrays, task, source)
  arrays = dict(arrays)
  if "x_val" not in arrays:
    if not 0.0 < val_fraction < 1.0:
      raise UserError(f"data.val_fraction must lie in (0, 1), got {val_fraction}")
    n = len(arrays["x_train"])
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n_val >= n:
      raise UserError(f"{source}: {n} training examples are too few to split off a val set")
    tr, va = perm[n_val:], perm[:n_val]
    x, y = arrays["x_train"], arrays["y_train"]
    arrays.update(x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va])
  if task == CLASSIFICATION:
    ys = {k: arrays[k].astype(np.int32) for k in arrays if k.startswith("y_")}
    num_outputs = int(max(int(v.max()) for v in ys.values())) + 1
  else:
    ys = {k: arrays[k].astype(np.float32).reshape(len(arrays[k]), -1)
          for k in arrays if k.startswith("y_")}
    num_outputs = ys["y_train"].shape[1]
  xs = {k: arrays[k] if inputs != IDENTITY else arrays[k].astype(np.float32)
        for k in arrays if k.startswith("x_")}
  return Splits(task=task, num_outputs=num_outputs, inputs=inputs, **xs, **ys)


def load(data_cfg: ml_collections.ConfigDict, seed: int, path: str | None = None) -> Splits:
  """The splits a config (or ``--data FILE.npz``, which wins) asks for, with its loss."""
  splits = _load(data_cfg, seed, path)
  return dataclasses.replace(splits, loss=data_cfg.get("loss", "auto"))


def _load(data_cfg: ml_collections.ConfigDict, seed: int, path: str | None) -> Splits:
  stated = data_cfg.get("task", "auto")
  if path:
    return make_splits(load_npz(path), data_cfg.val_fraction, seed, path, stated)
  name = data_cfg.name
  arrays = datasets.arrays_of(name, data_cfg)
  _check_names(arrays, name)
  entry = datasets.DATASETS[name]
  inputs = entry.inputs(arrays, data_cfg) if entry.inputs else IDENTITY
  return make_splits(arrays, data_cfg.val_fraction, seed,
                     entry.source(data_cfg) if entry.source else name, entry.task or stated,
                     inputs)


def _check_names(arrays: dict, source: str, others: bool = False) -> None:
  """The arrays are ``x_train, y_train, x_test, y_test`` and optionally both ``x_val,
  y_val`` (``others``: further arrays are let be, as in a ``.npz`` file, whose reader drops
  them); else one line naming ``source``."""
  unknown = sorted(set(arrays) - {*_REQUIRED, "x_val", "y_val"})
  if unknown and not others:
    raise UserError(f"{source}: unknown arrays {', '.join(unknown)} (give x_train, y_train, "
                    "x_test, y_test and optionally x_val, y_val)")
  missing = [k for k in _REQUIRED if k not in arrays]
  if missing:
    raise UserError(f"{source} lacks arrays {', '.join(missing)} "
                    f"(it has {', '.join(sorted(arrays)) or 'none'})")
  if ("x_val" in arrays) != ("y_val" in arrays):
    raise UserError(f"{source} must hold both x_val and y_val, or neither")


def _npz(data_cfg: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  if not data_cfg.get("path"):
    raise UserError("this experiment needs data: pass --data FILE.npz")
  return load_npz(data_cfg.path)


def _cifar_inputs(arrays: dict, data_cfg: ml_collections.ConfigDict) -> Inputs:
  augment = data_cfg.get("augment", "crop_flip")
  if augment not in AUGMENTS:
    raise UserError(f"data.augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")
  return for_images(arrays["x_train"], augment)


for _name, _entry in (
    ("mnist1d", datasets.Dataset(
        lambda d: mnist1d(d.get("num_samples", 5000), d.get("data_seed", 42),
                          d.get("num_test", 0)),
        "MNIST-1D (Greydanus 2020), generated offline: data.num_samples, num_test, data_seed")),
    ("digits", datasets.Dataset(
        lambda d: digits(d.get("data_seed", 0), bool(d.get("images", False))),
        "scikit-learn's 8x8 digits: 64 features, or 8x8x1 images (data.images)")),
    ("npz", datasets.Dataset(_npz, "your arrays: a .npz file (data.path, --data FILE.npz)",
                             source=lambda d: d.path)),
    *((name, datasets.Dataset(
        lambda d, name=name: cifar.load(name, d.get("dir", "")),
        f"{name.upper()} from its python-pickle files (data.dir; data.augment)",
        task=CLASSIFICATION, inputs=_cifar_inputs)) for name in cifar.LAYOUTS)):
  datasets.DATASETS.add(_name, _entry, builtin=True)


def epoch_order(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
  """Example indices of one epoch, ``[steps, batch_size]``; the last partial batch is dropped.

  The order is a function of (seed, epoch) alone, so a resumed run sees the same batches.
  """
  steps = n // batch_size
  perm = np.random.default_rng([seed, epoch]).permutation(n)
  return perm[: steps * batch_size].reshape(steps, batch_size)
