"""scikit-learn's 8x8 digits as images with a narrow CIFAR-style ResNet: which activation per
slot?

Run:  actsearch search --config experiments/digits_resnet.py --workdir runs/digits_resnet
The ResNet of He et al. 2016 (models/resnet.py) at depth 8, one basic block per stage, of 8,
16 and 32 channels, with batch norm: 7 slots (the stem's, two per block), on 8x8x1 images
(8, 4 and 2 pixels a side per stage). The CPU-sized stand-in for a ResNet on CIFAR
(experiments/cifar10_resnet20.py is the real one, once its data are on disk).
"""

from actsearch.configs import WIDE_CANDIDATES, base_config


def get_config():
  c = base_config()
  c.data.name = "digits"
  c.data.images = True             # 8x8x1: height, width, channels
  c.data.data_seed = 0
  c.model.name = "resnet"
  c.model.depth = 8                # 6n + 2 with n = 1 block per stage
  c.model.widths = [8, 16, 32]
  c.search.candidates = list(WIDE_CANDIDATES)
  # The race, as the other headline experiments (docs/yardstick.md): every candidate's network
  # trained alone for 5 epochs, the best 4 for 10 more.
  c.search.strategy = "race"
  c.retrain.baselines = ["relu", "gelu", "silu", "elu", "swish_beta", "pau"]
  c.retrain.batch_size = 64        # 1437 training examples: 22 steps an epoch
  return c
