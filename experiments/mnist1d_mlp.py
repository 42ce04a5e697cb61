"""MNIST-1D with an MLP of two hidden layers: which activation per layer?

Run:  actsearch search --config experiments/mnist1d_mlp.py --workdir runs/mnist1d_mlp
"""

from actsearch.configs import base_config


def get_config():
  c = base_config()
  c.data.name = "mnist1d"
  c.data.num_samples = 10000
  c.model.name = "mlp"
  c.model.widths = [100, 100]
  c.search.epochs = 40
  c.search.batch_size = 64
  return c
