"""MNIST-1D, the paper's 1-D CNN (3 conv layers, 25 channels): which activation per layer?

Run:  make search            (or: actsearch search --config experiments/mnist1d_cnn.py \
                                    --workdir runs/mnist1d_cnn)
Quick local check:  make search ARGS="--epochs 2"
"""

from actsearch.configs import base_config
from actsearch.space.activations import WIDE


def get_config():
  c = base_config()
  c.data.name = "mnist1d"
  c.data.num_samples = 8000        # training: 4000 for the weights, 4000 for alpha
  c.data.num_test = 10000          # test split: sampling error of accuracy about 0.2 points
  c.model.name = "cnn1d"
  c.model.widths = [25, 25, 25]    # channels of the three convolutions
  c.model.kernel_sizes = [5, 3, 3]
  c.search.epochs = 40
  c.search.batch_size = 64
  # Chosen on val (docs/choosing-defaults.md): the sixteen candidates of group "wide"; every
  # candidate screened alone, then the best two of each slot validated as discrete networks.
  c.search.candidates = list(WIDE)
  c.search.relaxation = "gumbel"
  c.search.discretize = "screen"
  c.search.shortlist_k = 2         # 2^3 = 8 networks
  # Chosen on val: PAU with its coefficients per channel, alone, 95.91 +- 0.04 against 95.03
  # per layer and gelu's 94.99 (3 seeds, 40 epochs on the 4000 train examples)
  c.search.param_granularity = "channel"
  # Each screened network trains as long as the retrain does: per-channel PAU needs it (after
  # 10 epochs it screens level with soft_shrink, 0.931 against 0.930; after 40, 95.9 against
  # 94.4 on val). See docs/choosing-defaults.md for the order in which this was found.
  c.search.shortlist_epochs = 40
  # The race decides (strategies/race.py): every candidate's network trained alone for 5
  # epochs on the train split, the 4 with the lowest loss there for 10 more, the best on val
  # chosen. Chosen against the truth (docs/yardstick.md): the supernet's weights rank the
  # candidates at Spearman +0.38 on the MNIST-1D MLP, the race at +0.84 (+0.83 on the CNN,
  # where it finds pau), for 1.5 retrain seeds of training examples against the screen's 89.
  # The supernet's settings above serve `--set search.strategy=darts`.
  c.search.strategy = "race"
  c.retrain.baselines = ["relu", "gelu", "silu", "elu", "swish_beta", "pau"]
  return c
