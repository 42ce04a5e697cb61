"""CIFAR-10 and CIFAR-100 from a local directory, in the python-pickle layout of their
distribution (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html).

``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (training) and ``test_batch``,
each a pickled dict with ``data`` (a ``[10000, 3072]`` uint8 array: 1024 red, 1024 green,
1024 blue values of a 32x32 image, row by row) and ``labels`` (a list of 0..9);
``cifar-100-python/``: ``train`` and ``test``, with ``data`` and ``fine_labels`` (0..99). The
files are Python 2 pickles, so their keys and strings load as bytes (``encoding="bytes"``);
files written by Python 3 carry str keys and may hold the array's bytes as
``_codecs.encode(text, "latin1")``: both are read.

Nothing is unpickled beyond that: a restricted unpickler (``_Arrays``) resolves only the
globals that rebuild a numpy array of plain numbers (numpy 1's ``numpy.core`` and numpy 2's
``numpy._core`` names, and latin-1 ``_codecs.encode``), so a file whose unpickling would call
anything else is refused before it runs. ``data.dir`` may name the extracted folder or the
folder that holds it. Images come back as uint8 ``[N, 32, 32, 3]`` (height, width, channels),
labels as int64.
"""

from __future__ import annotations

import io
import os
import pickle

import numpy as np

from actsearch.errors import UserError

# name -> (the distribution's folder, training files, test file, label key, classes)
LAYOUTS = {
    "cifar10": ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                "test_batch", "labels", 10),
    "cifar100": ("cifar-100-python", ("train",), "test", "fine_labels", 100),
}
SIDE, CHANNELS = 32, 3
MAX_BYTES = 2 ** 30  # no CIFAR file comes near this; a larger one is not read


def _latin1(text, encoding="latin1"):
  """``_codecs.encode`` as protocol-2 pickles of Python 3 use it for bytes, and only so."""
  if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in (
      "latin1", "latin-1", "iso-8859-1"):
    raise pickle.UnpicklingError("_codecs.encode is allowed only for latin-1 text")
  return text.encode("latin-1")


def _dtype(*args):
  """``numpy.dtype`` for plain numbers only (an object dtype would unpickle its elements)."""
  d = np.dtype(*args)
  if d.hasobject or d.fields is not None:
    raise pickle.UnpicklingError(f"an array of dtype {d} is not plain numbers")
  return d


def _scalar(dtype, *args):
  """``numpy.core.multiarray.scalar`` (a numpy number in a list of labels), plain only."""
  if not isinstance(dtype, np.dtype) or dtype.hasobject:
    raise pickle.UnpicklingError("a numpy scalar that is not a plain number")
  return _SCALAR(dtype, *args)


_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, 1.x and 2.x alike
_SCALAR = np.int64(0).__reduce__()[0]
_ALLOWED = {
    **{(f"numpy{core}.multiarray", name): fn for core in (".core", "._core")
       for name, fn in (("_reconstruct", _RECONSTRUCT), ("scalar", _scalar))},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,
}


class _Arrays(pickle.Unpickler):
  """An unpickler that rebuilds numpy arrays, dicts, lists, strings and numbers, nothing else
  (the pattern of the Python documentation's "Restricting Globals")."""

  def find_class(self, module, name):
    found = _ALLOWED.get((module, name))
    if found is None:
      raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR file never "
                                   "holds")
    return found


def _unpickle(path: str) -> dict:
  """The dict of one file, its keys as str."""
  try:
    size = os.path.getsize(path)
    if size > MAX_BYTES:
      raise UserError(f"{path} is {size} bytes, larger than any CIFAR file")
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise UserError(f"{path} cannot be read ({e.strerror or e})") from None
  try:
    obj = _Arrays(io.BytesIO(raw), encoding="bytes").load()
  except UserError:
    raise
  except Exception as e:  # noqa: BLE001 - a malformed pickle raises any of a dozen kinds
    reason = " ".join(str(e).split())[:160] or type(e).__name__
    raise UserError(f"{path} is not a CIFAR python-pickle file ({reason})") from None
  if not isinstance(obj, dict):
    raise UserError(f"{path} is not a CIFAR python-pickle file (it holds a "
                    f"{type(obj).__name__}, not a dict)")
  out = {}
  for k, v in obj.items():
    if isinstance(k, bytes):
      k = k.decode("latin-1")
    if isinstance(k, str):
      out[k] = v
  return out


def _batch(path: str, label_key: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
  d = _unpickle(path)
  missing = [k for k in ("data", label_key) if k not in d]
  if missing:
    raise UserError(f"{path} lacks {' and '.join(missing)} (it has "
                    f"{', '.join(sorted(d)) or 'no keys'})")
  x = d["data"]
  per = SIDE * SIDE * CHANNELS
  if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != per:
    what = (f"a {x.dtype} array of shape {list(x.shape)}" if isinstance(x, np.ndarray)
            else f"a {type(x).__name__}")
    raise UserError(f"{path}: data must be a uint8 array of shape [N, {per}], got {what}")
  labels = d[label_key]
  if isinstance(labels, np.ndarray):
    labels = labels.tolist()
  if not isinstance(labels, list) or not all(
      isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
    raise UserError(f"{path}: {label_key} must be a list of integers")
  y = np.asarray(labels, np.int64)
  if len(y) != len(x):
    raise UserError(f"{path}: {len(x)} images but {len(y)} labels")
  if len(y) and (y.min() < 0 or y.max() >= classes):
    raise UserError(f"{path}: {label_key} must lie in 0..{classes - 1}, got {y.min()}.."
                    f"{y.max()}")
  images = x.reshape(len(x), CHANNELS, SIDE, SIDE).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), y


def folder(name: str, directory: str) -> str:
  """The distribution's folder: ``directory`` itself or its child of the layout's name."""
  sub = LAYOUTS[name][0]
  if not directory:
    raise UserError(f"data.name {name} reads its files from a folder: pass --set "
                    f"data.dir=PATH (the folder {sub}/ from {name}'s python version, or the "
                    "folder that holds it)")
  for candidate in (os.path.join(directory, sub), directory):
    if os.path.isdir(candidate) and os.path.isfile(os.path.join(candidate, LAYOUTS[name][2])):
      return candidate
  if not os.path.isdir(directory):
    raise UserError(f"data.dir {directory} is not a folder")
  raise UserError(f"data.dir {directory} holds no {name} files (expected {sub}/"
                  f"{LAYOUTS[name][2]} or {LAYOUTS[name][2]} in it)")


def load(name: str, directory: str) -> dict[str, np.ndarray]:
  """``x_train, y_train, x_test, y_test`` of ``cifar10`` or ``cifar100`` from ``directory``."""
  _, train, test, label_key, classes = LAYOUTS[name]
  root = folder(name, directory)
  parts = []
  for f in train:
    path = os.path.join(root, f)
    if not os.path.isfile(path):
      raise UserError(f"{root} lacks {f}, one of {name}'s training files")
    parts.append(_batch(path, label_key, classes))
  x_test, y_test = _batch(os.path.join(root, test), label_key, classes)
  return {"x_train": np.concatenate([p[0] for p in parts]),
          "y_train": np.concatenate([p[1] for p in parts]), "x_test": x_test, "y_test": y_test}
