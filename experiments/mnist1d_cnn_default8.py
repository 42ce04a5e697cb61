"""MNIST-1D CNN searched over the base config's eight candidates (group "default"): the
search of experiments/mnist1d_cnn.py with `search.candidates = ["default"]`, the yardstick of
experiments/mnist1d_cnn_catalogue.py (the same shortlist of 8 networks, trained alike).

Run:  actsearch search --config experiments/mnist1d_cnn_default8.py \
          --workdir runs/mnist1d_cnn_default8
"""

from actsearch.configs import experiment, load_config


def get_config():
  c = load_config(experiment("mnist1d_cnn"))
  c.search.strategy = "darts"     # the supernet and its screen, as measured
  # as measured (docs/choosing-defaults.md): parameters per layer, 10-epoch screens
  c.search.param_granularity = "layer"
  c.search.shortlist_epochs = 10
  c.search.candidates = ["default"]
  return c
