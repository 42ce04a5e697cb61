"""CIFAR files as their distribution lays them out, written by the tests (random pixels).

``write(root, name, per_file, layout)`` writes ``root/cifar-10-batches-py/`` (five training
files, ``test_batch``, ``batches.meta``) or ``root/cifar-100-python/`` (``train``, ``test``,
``meta``) and returns the arrays it wrote as the reader should return them (``[N, 32, 32, 3]``).
Layouts:

* ``py2``: as the real files are, Python 2 pickles (protocol 2): keys and the array's bytes
  are byte strings (``SHORT_BINSTRING``/``BINSTRING``), the array rebuilt by numpy 1's
  ``numpy.core.multiarray._reconstruct``;
* ``numpy2``: ``pickle.dump(protocol=2)`` from Python 3 and numpy 2 (bytes keys; the array's
  bytes as ``_codecs.encode(text, "latin1")``; ``numpy._core.multiarray``);
* ``numpy1``: the same with numpy 1's module names (``numpy.core.multiarray``);
* ``str_keys``: Python 3's default protocol with str keys.
"""

from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np

LAYOUTS = ("py2", "numpy2", "numpy1", "str_keys")
FILES = {"cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                     "test_batch", "labels", 10),
         "cifar100": ("cifar-100-python", ["train"], "test", "fine_labels", 100)}


class _Py2(pickle._Pickler):
  """Writes ``bytes`` as Python 2 wrote ``str``: ``SHORT_BINSTRING`` / ``BINSTRING``."""

  def save_bytes(self, obj):
    n = len(obj)
    if n < 256:
      self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
    else:
      self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
    self.memoize(obj)

  dispatch = dict(pickle._Pickler.dispatch)
  dispatch[bytes] = save_bytes


def _numpy1(raw: bytes) -> bytes:
  return raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def dumps(obj, layout: str) -> bytes:
  """``obj`` pickled in ``layout``."""
  if layout == "py2":
    buf = io.BytesIO()
    _Py2(buf, protocol=2).dump(obj)
    return _numpy1(buf.getvalue())
  if layout == "str_keys":
    return pickle.dumps({(k.decode() if isinstance(k, bytes) else k): v
                         for k, v in obj.items()})
  raw = pickle.dumps(obj, protocol=2)
  return _numpy1(raw) if layout == "numpy1" else raw


def batch(n: int, classes: int, label_key: str, seed: int) -> dict:
  rng = np.random.default_rng(seed)
  return {b"batch_label": b"training batch", label_key.encode(): rng.integers(
      0, classes, n).tolist(), b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
          b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)]}


def write(root, name: str = "cifar10", per_file: int = 20, layout: str = "numpy2",
          test: int | None = None) -> dict[str, np.ndarray]:
  """Writes ``name``'s files under ``root`` (``per_file`` images in each training file,
  ``test`` in the test file, default ``per_file``); returns the arrays the reader gives."""
  folder, train, test_file, label_key, classes = FILES[name]
  d = os.path.join(str(root), folder)
  os.makedirs(d, exist_ok=True)
  written = {}
  for i, f in enumerate([*train, test_file]):
    b = batch(per_file if f != test_file else (test or per_file), classes, label_key, i)
    with open(os.path.join(d, f), "wb") as fh:
      fh.write(dumps(b, layout))
    written[f] = b
  with open(os.path.join(d, "batches.meta" if name == "cifar10" else "meta"), "wb") as fh:
    fh.write(dumps({b"label_names": [b"c%d" % i for i in range(classes)]}, layout))

  def arrays(files):
    x = np.concatenate([written[f][b"data"] for f in files]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(written[f][label_key.encode()]) for f in files])
    return x.transpose(0, 2, 3, 1), y
  x_train, y_train = arrays(train)
  x_test, y_test = arrays([test_file])
  return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
          "dir": d}
