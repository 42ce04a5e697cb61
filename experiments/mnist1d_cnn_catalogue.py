"""MNIST-1D CNN searched over the whole catalogue (every registered candidate, 82 with the
built-in ones): the search of experiments/mnist1d_cnn.py with `search.candidates = ["all"]`.

Run:  actsearch search --config experiments/mnist1d_cnn_catalogue.py \
          --workdir runs/mnist1d_cnn_catalogue
It shortlists as many networks as the 8-candidate search (experiments/mnist1d_cnn_default8.py)
and trains them alike; its screen trains each of the 82 candidates alone first.
"""

from actsearch.configs import experiment, load_config


def get_config():
  c = load_config(experiment("mnist1d_cnn"))
  c.search.strategy = "darts"     # the supernet and its screen, as measured
  # as measured (docs/choosing-defaults.md): parameters per layer, 10-epoch screens
  c.search.param_granularity = "layer"
  c.search.shortlist_epochs = 10
  c.search.candidates = ["all"]
  return c
