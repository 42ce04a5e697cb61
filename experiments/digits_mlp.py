"""scikit-learn's 8x8 digits with an MLP of two hidden layers: which activation per layer?

Run:  actsearch search --config experiments/digits_mlp.py --workdir runs/digits_mlp
The data ship with scikit-learn (1797 images; 80% train, split 50/50 into train and val for
the search, 20% test).
"""

from actsearch.configs import base_config


def get_config():
  c = base_config()
  c.data.name = "digits"
  c.data.data_seed = 0
  c.model.name = "mlp"
  c.model.widths = [64, 64]
  c.search.epochs = 40
  c.search.batch_size = 64
  # Chosen on val (README "Choosing the defaults"): Gumbel samples rank candidates by what
  # they do alone; the shortlist trains the top two of each slot as discrete networks.
  c.search.relaxation = "gumbel"
  c.search.discretize = "shortlist"
  c.retrain.batch_size = 64        # 1437 training examples: 22 steps an epoch
  return c
