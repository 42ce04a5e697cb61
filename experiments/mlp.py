"""An MLP for your own data: classification (integer labels) or regression (float targets).

Run:  actsearch search --config experiments/mlp.py --data FILE.npz --workdir runs/mine \
          --set model.widths=[64,64]
FILE.npz holds x_train, y_train, x_test, y_test and optionally x_val, y_val.
"""

from actsearch.configs import base_config
from actsearch.space.activations import WIDE


def get_config():
  c = base_config()
  c.data.name = "npz"              # needs --data FILE.npz (or data.path)
  c.model.name = "mlp"
  c.model.widths = [64, 64]
  c.search.epochs = 60
  c.search.batch_size = 64
  # Small data and small networks: a larger weight lr than DARTS' 0.025, and an alpha lr
  # that lets the mixture commit within the search (DARTS' 3e-4 barely moves alpha here).
  c.optim.weights.lr = 0.1
  c.optim.arch.lr = 0.01
  # Chosen as the MNIST-1D experiments' were (docs/choosing-defaults.md): the sixteen
  # candidates of group "wide" and square (polynomial structure is common in regression data,
  # and it costs one more screened network), every candidate screened alone, then the best
  # four of each slot validated as discrete networks (16 for two hidden layers).
  c.search.candidates = [*WIDE, "square"]
  c.search.relaxation = "gumbel"
  c.search.discretize = "screen"
  c.search.shortlist_k = 4
  c.search.shortlist_epochs = 20
  # Each network trained from 5 initialisations and scored by the best (a small network's fit
  # depends on its start: a gaussian student of a gaussian teacher reaches a val loss of 0.01
  # or stays at 0.3 by seed), and the one-standard-error rule: a network with learned
  # activation parameters (pau, swish_beta) is chosen only when it beats the simplest network
  # by more than one standard error of its score. Chosen on the known-answer teachers' val
  # split (docs/choosing-defaults.md).
  c.search.shortlist_seeds = 5
  c.search.shortlist_reduce = "best"
  c.search.simplest_within_se = True
  return c
