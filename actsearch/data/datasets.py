"""The datasets by name (``data.name``): mnist1d, digits, npz, cifar10 and cifar100 built in, a
user's own by ``actsearch.register_dataset``.

A dataset is a function ``fn(data_cfg) -> arrays``: the run's ``data`` config to a dict of
arrays ``x_train, y_train, x_test, y_test`` and optionally ``x_val, y_val`` (without them the
val split is cut from train by ``data.val_fraction``). Integer labels are classification,
float targets regression (or as ``data.task`` states). The arrays are checked as a ``.npz``
file's are; ``fn`` may read its own keys of ``data`` (add them to the config it runs with).
A dataset registered by user code is recorded with it (``code``), so that a retrain in a fresh
process is told which file to ``--import``.

>>> import numpy as np
>>> import actsearch
>>> @actsearch.register_dataset("doc_blobs")
... def blobs(data_cfg):
...   rng = np.random.default_rng(data_cfg.data_seed)
...   x = rng.normal(size=(200, 2)).astype(np.float32)
...   y = (x[:, 0] > 0).astype(np.int64)
...   return {"x_train": x[:150], "y_train": y[:150], "x_test": x[150:], "y_test": y[150:]}
>>> cfg = actsearch.config()
>>> cfg.data.name = "doc_blobs"
>>> from actsearch import data
>>> data.load(cfg.data, seed=0).describe()["train"]
75
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections
import numpy as np

from actsearch.errors import UserError, their_code
from actsearch.registry import Registry

Arrays = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Dataset:
  """An entry of ``DATASETS``."""
  arrays: Callable[[ml_collections.ConfigDict], Arrays]  # data config -> the arrays
  doc: str = ""
  task: str | None = None   # the task it always is; None: ``data.task`` (auto: by the labels)
  # how stored examples become the network's inputs (``inputs.Inputs``); None: as float32
  inputs: Callable[[Arrays, ml_collections.ConfigDict], object] | None = None
  # what messages about its arrays call it; None: its name
  source: Callable[[ml_collections.ConfigDict], str] | None = None
  user: bool = False        # the user's function: its failures are marked as theirs


DATASETS: Registry[Dataset] = Registry("dataset", "data.name")


def register(name: str):
  """Decorator: registers ``fn(data_cfg) -> arrays`` as dataset ``name`` (``data.name``);
  returns ``fn``. The module's docstring has an example."""
  if name in DATASETS and DATASETS.code(name) is None:
    raise UserError(f"a dataset needs a new name: {name!r} is built in")

  def wrap(fn):
    if not callable(fn):
      raise UserError(f"dataset {name!r} must be a function (data config) -> dict of arrays")
    doc = (fn.__doc__ or "").strip().split("\n")[0]
    DATASETS.add(name, Dataset(arrays=fn, doc=doc, user=True), origin=fn)
    return fn
  return wrap


def arrays_of(name: str, data_cfg: ml_collections.ConfigDict) -> Arrays:
  """The arrays of dataset ``name``; a user's function that fails or returns no dict of
  arrays is one line (an exception inside it is marked as the user's)."""
  entry = DATASETS.require(name)
  if not entry.user:
    return entry.arrays(data_cfg)
  with their_code(f"dataset {name!r}"):
    out = entry.arrays(data_cfg)
  if not isinstance(out, dict) or not all(isinstance(k, str) for k in out):
    raise UserError(f"dataset {name!r} returned {type(out).__name__}; it must return a dict "
                    "of arrays x_train, y_train, x_test, y_test (optionally x_val, y_val)")
  try:
    return {k: np.asarray(v) for k, v in out.items()}
  except (TypeError, ValueError) as e:
    raise UserError(f"dataset {name!r}: not arrays ({e})") from None
