"""Your own Flax NNX model, searched: a small CNN in the style of Flax's MNIST tutorial on
scikit-learn's 8x8 digits as images.

``CNN`` is the model as a user writes it; ``SearchableCNN`` is the same model made
searchable: each ``nnx.relu(...)`` became ``actsearch.slot(self, NAME, nnx.relu)(...)``, one
line per activation and nothing else (a test diffs the two). Outside a search the slots are
ReLU, so ``SearchableCNN`` computes what ``CNN`` does.

From the command line, each step in its own process:

  actsearch search --config experiments/own_model.py --workdir runs/own_model
  actsearch export runs/own_model --import experiments/own_model.py
  actsearch retrain runs/own_model/architecture.json --import experiments/own_model.py

From Python (the found activations applied to your own model):

  import actsearch
  record = actsearch.search(get_config(), "runs/own_model")
  model = actsearch.apply(record, SearchableCNN(rngs=nnx.Rngs(0)))
"""

from functools import partial

from flax import nnx

import actsearch
from actsearch.configs import base_config


class CNN(nnx.Module):
  """A simple CNN model."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 16, kernel_size=(3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(16, 32, kernel_size=(3, 3), rngs=rngs)
    self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
    self.linear1 = nnx.Linear(2 * 2 * 32, 64, rngs=rngs)
    self.linear2 = nnx.Linear(64, 10, rngs=rngs)

  def __call__(self, x):
    x = self.avg_pool(nnx.relu(self.conv1(x)))
    x = self.avg_pool(nnx.relu(self.conv2(x)))
    x = x.reshape(x.shape[0], -1)  # flatten
    x = nnx.relu(self.linear1(x))
    x = self.linear2(x)
    return x


@actsearch.register_model("own_cnn")
class SearchableCNN(nnx.Module):
  """A simple CNN model."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 16, kernel_size=(3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(16, 32, kernel_size=(3, 3), rngs=rngs)
    self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
    self.linear1 = nnx.Linear(2 * 2 * 32, 64, rngs=rngs)
    self.linear2 = nnx.Linear(64, 10, rngs=rngs)

  def __call__(self, x):
    x = self.avg_pool(actsearch.slot(self, "conv1", nnx.relu)(self.conv1(x)))
    x = self.avg_pool(actsearch.slot(self, "conv2", nnx.relu)(self.conv2(x)))
    x = x.reshape(x.shape[0], -1)  # flatten
    x = actsearch.slot(self, "linear1", nnx.relu)(self.linear1(x))
    x = self.linear2(x)
    return x


def get_config():
  c = base_config()
  c.data.name = "digits"
  c.data.images = True             # 8x8x1: height, width, channels
  c.data.data_seed = 0
  c.model.name = "own_cnn"         # registered above; model.widths is not this model's
  c.search.epochs = 20
  c.search.batch_size = 64
  c.search.candidates = ["default"]
  c.search.shortlist_epochs = 10
  c.retrain.epochs = 20
  c.retrain.batch_size = 64
  c.retrain.baselines = ["relu", "gelu"]
  return c
