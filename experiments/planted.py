"""A planted teacher for comparing search strategies: three slots whose activations are known,
eight candidates each (8^3 = 512 networks), every network's short-training val loss measured
once, exhaustively, into tests/fixtures/planted.json.

Run:  python experiments/planted.py tests/fixtures/planted.json

The model (``planted``, registered here with the public API): three branches, each a dense
layer of ``WIDTH`` units on its own ``DIM`` inputs and a slot, their outputs concatenated into a
linear head. The teacher is that model with the activations ``TEACHER`` and random weights:
x ~ N(0, I), y = sum_i v_i . t_i(W_i x_i + b_i), standardised; 4000 train examples (split into
the search's train and val halves by the config's seed) and 500 test. A network with the
teacher's activations can fit y exactly; one with a wrong activation in a slot cannot, so the
architectures within 10% of the teacher's own loss are few (the suite checks: at most 1% of
the 512). The strategies' tests read the fixture through the trainer's interface
(``evaluate(networks) -> scores``) instead of training, and the suite retrains entries of it.
"""

import itertools
import json
import os
import sys
import tempfile

import jax.numpy as jnp
import numpy as np
from flax import nnx

import actsearch
from actsearch.configs import base_config

CANDIDATES = ["relu", "tanh", "sin", "gaussian", "square", "elu", "softplus", "soft_shrink"]
TEACHER = ("sin", "square", "tanh")
SLOTS = ("branch0", "branch1", "branch2")
DIM, WIDTH = 4, 4
SCALE = 1.5  # of the teacher's first-layer weights: inputs to its activations have std ~1.5

_FNS = {"sin": np.sin, "square": np.square, "tanh": np.tanh}


@actsearch.register_model("planted")
class Planted(nnx.Module):
  """Three branches ``slot_i(Dense_i(x_i))`` into a linear head."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.branches = nnx.List([nnx.Linear(DIM, WIDTH, rngs=rngs) for _ in SLOTS])
    self.head = nnx.Linear(len(SLOTS) * WIDTH, 1, rngs=rngs)

  def __call__(self, x):
    hs = [actsearch.slot(self, name, nnx.relu)(layer(x[:, i * DIM:(i + 1) * DIM]))
          for i, (name, layer) in enumerate(zip(SLOTS, self.branches))]
    return self.head(jnp.concatenate(hs, -1))


def teacher_arrays(seed: int = 0, n_train: int = 4000, n_test: int = 500) -> dict:
  """The teacher's regression data (see the module's docstring)."""
  rng = np.random.default_rng(7000 + seed)
  x = rng.normal(size=(n_train + n_test, DIM * len(SLOTS)))
  y = np.zeros(n_train + n_test)
  for i, act in enumerate(TEACHER):
    z = x[:, i * DIM:(i + 1) * DIM] @ (rng.normal(size=(DIM, WIDTH)) * SCALE / np.sqrt(DIM))
    h = _FNS[act](z + rng.normal(size=WIDTH) * 0.5)
    h = (h - h[:n_train].mean(0)) / h[:n_train].std(0)  # every branch counts alike
    y += h @ (rng.normal(size=WIDTH) / np.sqrt(WIDTH))
  y = ((y - y[:n_train].mean()) / y[:n_train].std())[:, None]
  x, y = x.astype(np.float32), y.astype(np.float32)
  return {"x_train": x[:n_train], "y_train": y[:n_train],
          "x_test": x[n_train:], "y_test": y[n_train:]}


def get_config():
  c = base_config()
  c.data.name = "npz"              # the script writes teacher_arrays() and sets data.path
  c.model.name = "planted"
  c.search.candidates = list(CANDIDATES)
  c.search.batch_size = 50
  c.search.shortlist_epochs = 30   # the short training every strategy's network gets
  c.retrain.batch_size = 50
  c.retrain.lr = 0.01
  return c


def networks() -> list[tuple[str, ...]]:
  """All 512, in the fixture's order."""
  return list(itertools.product(CANDIDATES, repeat=len(SLOTS)))


def measure(nets, workdir: str, chunk: int = 64, cfg=None) -> list[float]:
  """Each network's score (minus its val loss) from the engine: the shortlist's trainer, the
  networks of a chunk trained together."""
  from actsearch import data
  from actsearch.strategies import supernet

  cfg = get_config() if cfg is None else cfg
  cfg.data.path = data.save_arrays(teacher_arrays(), os.path.join(workdir, "planted.npz"))
  splits = data.load(cfg.data, cfg.seed)
  su = supernet.setup(cfg, splits)
  names = [v.name for v in supernet.slot_views_of(su)]
  assert tuple(names) == SLOTS, names
  ctx = supernet.measurements(su, su.state, workdir)
  scores = []
  for i in range(0, len(nets), chunk):
    scores += ctx.train_and_score([dict(zip(names, net)) for net in nets[i:i + chunk]])[0]
  return scores


def main(out: str) -> None:
  import logging
  logging.getLogger("absl").setLevel(logging.CRITICAL)  # orbax's notes on every save
  nets = networks()
  with tempfile.TemporaryDirectory() as workdir:
    scores = measure(nets, workdir)
  cfg = get_config()
  with open(out, "w", encoding="utf-8") as f:
    json.dump({"candidates": CANDIDATES, "slots": list(SLOTS), "teacher": list(TEACHER),
               "score": f"minus val loss after {cfg.search.shortlist_epochs} epochs from "
                        "scratch (seed 0)",
               "scores": {"/".join(n): s for n, s in zip(nets, scores)}}, f, indent=0)
    f.write("\n")


if __name__ == "__main__":
  main(sys.argv[1])
