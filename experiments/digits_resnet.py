"""scikit-learn's 8x8 digits as images with a narrow CIFAR-style ResNet: which activation per
slot?

Run:  actsearch search --config experiments/digits_resnet.py --workdir runs/digits_resnet
The ResNet of He et al. 2016 (models/resnet.py) at depth 8, one basic block per stage, of 8,
16 and 32 channels, with batch norm: 7 slots (the stem's, two per block), on 8x8x1 images
(8, 4 and 2 pixels a side per stage). The CPU-sized stand-in for a ResNet on CIFAR
(experiments/cifar10_resnet20.py is the real one, once its data are on disk).
"""

from actsearch.configs import experiment, load_config


def get_config():
  c = load_config(experiment("digits_cnn2d"))  # its data, candidates, race and baselines
  c.model.name = "resnet"
  c.model.depth = 8                # 6n + 2 with n = 1 block per stage
  c.model.widths = [8, 16, 32]
  del c.model["dense"]
  return c
