"""Your own Flax NNX model as Flax's guides write one, searched: a residual MLP with batch norm,
dropout, layer norm and an ``nnx.List`` of blocks, on scikit-learn's 8x8 digits (64 features).

Two ways of switching train and eval mode, both as Flax's guides show them, and both searched
alike (the engine sets the mode before every pass, whatever mode the model arrives in):

* ``ResidualMLP`` (``model.name = "own_residual"``): the layers read their mode from their
  attributes, set by Flax's own switch, ``model.train()`` / ``model.eval()``;
* ``ResidualMLPTrainArg`` (``"own_residual_train_arg"``): ``__call__(self, x, train)`` passes
  the mode down (``use_running_average=not train``, ``deterministic=not train``).

Each is registered through a factory that sizes it from the run's config (``model.width``,
``model.depth``, ``model.dropout``: ``--set model.dropout=0`` searches it without dropout).

Each ``nnx.relu(...)`` of the model as written became ``actsearch.slot(self, NAME,
nnx.relu)(...)``, one line per activation. The batch norm's running averages are part of the
search's and the retrain's state (checkpointed, the same on every device; the statistics of
the global batch in train mode); the dropout draws its masks from the run's seed, the step and
the device; both are off or fixed in evaluation.

From the command line, each step in its own process:

  actsearch search --config experiments/own_residual.py --workdir runs/own_residual
  actsearch export runs/own_residual --import experiments/own_residual.py
  actsearch retrain runs/own_residual/architecture.json --import experiments/own_residual.py

From Python:

  import actsearch
  record = actsearch.search(get_config(), "runs/own_residual")
  model = actsearch.apply(record, ResidualMLP(input_shape=(64,), num_outputs=10,
                                              rngs=nnx.Rngs(0)))
  model.eval()  # batch norm's running averages, no dropout
"""

from flax import nnx

import actsearch
from actsearch.configs import base_config


class Block(nnx.Module):
  """``x + dropout(act(bn(linear(x))))``, its mode from its layers' attributes."""

  def __init__(self, width: int, dropout: float, *, rngs: nnx.Rngs):
    self.linear = nnx.Linear(width, width, rngs=rngs)
    self.bn = nnx.BatchNorm(width, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x):
    return x + self.dropout(actsearch.slot(self, "act", nnx.relu)(self.bn(self.linear(x))))


class ResidualMLP(nnx.Module):
  """A linear stem, ``depth`` residual blocks, layer norm and a linear head."""

  def __init__(self, *, input_shape, num_outputs, rngs: nnx.Rngs, width: int = 32,
               depth: int = 2, dropout: float = 0.1):
    self.stem = nnx.Linear(input_shape[-1], width, rngs=rngs)
    self.blocks = nnx.List([Block(width, dropout, rngs=rngs) for _ in range(depth)])
    self.norm = nnx.LayerNorm(width, rngs=rngs)
    self.head = nnx.Linear(width, num_outputs, rngs=rngs)

  def __call__(self, x):
    x = actsearch.slot(self, "stem", nnx.relu)(self.stem(x.reshape(x.shape[0], -1)))
    for block in self.blocks:
      x = block(x)
    return self.head(self.norm(x))


class BlockTrainArg(nnx.Module):
  """``Block`` with its mode passed down as an argument."""

  def __init__(self, width: int, dropout: float, *, rngs: nnx.Rngs):
    self.linear = nnx.Linear(width, width, rngs=rngs)
    self.bn = nnx.BatchNorm(width, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x, train: bool):
    h = self.bn(self.linear(x), use_running_average=not train)
    return x + self.dropout(actsearch.slot(self, "act", nnx.relu)(h), deterministic=not train)


class ResidualMLPTrainArg(nnx.Module):
  """``ResidualMLP`` whose ``__call__`` takes ``train`` (no default)."""

  def __init__(self, *, input_shape, num_outputs, rngs: nnx.Rngs, width: int = 32,
               depth: int = 2, dropout: float = 0.1):
    self.stem = nnx.Linear(input_shape[-1], width, rngs=rngs)
    self.blocks = nnx.List([BlockTrainArg(width, dropout, rngs=rngs) for _ in range(depth)])
    self.norm = nnx.LayerNorm(width, rngs=rngs)
    self.head = nnx.Linear(width, num_outputs, rngs=rngs)

  def __call__(self, x, train: bool):
    x = actsearch.slot(self, "stem", nnx.relu)(self.stem(x.reshape(x.shape[0], -1)))
    for block in self.blocks:
      x = block(x, train)
    return self.head(self.norm(x))


@actsearch.register_model("own_residual")
def residual_mlp(*, input_shape, num_outputs, config, rngs):
  """``ResidualMLP`` sized by the run's ``model.width``, ``model.depth``, ``model.dropout``."""
  return ResidualMLP(input_shape=input_shape, num_outputs=num_outputs, rngs=rngs,
                     width=config.width, depth=config.depth, dropout=config.dropout)


@actsearch.register_model("own_residual_train_arg")
def residual_mlp_train_arg(*, input_shape, num_outputs, config, rngs):
  """``ResidualMLPTrainArg`` sized alike."""
  return ResidualMLPTrainArg(input_shape=input_shape, num_outputs=num_outputs, rngs=rngs,
                             width=config.width, depth=config.depth, dropout=config.dropout)


def get_config():
  c = base_config()
  c.data.name = "digits"
  c.data.data_seed = 0
  c.model.name = "own_residual"    # or own_residual_train_arg; model.widths is not this model's
  c.model.width = 32               # the residual stream's width
  c.model.depth = 2                # residual blocks
  c.model.dropout = 0.1            # dropout rate in each block
  c.search.epochs = 20
  c.search.batch_size = 64
  c.search.candidates = ["default"]
  c.search.shortlist_epochs = 10
  c.retrain.epochs = 20
  c.retrain.batch_size = 64
  c.retrain.baselines = ["relu", "gelu"]
  return c
