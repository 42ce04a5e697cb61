"""CIFAR-10 with ResNet-20 (He et al. 2016): which activation in each of its 19 slots?

Run:  actsearch search --config experiments/cifar10_resnet20.py --workdir runs/cifar10_resnet20 \\
        --set data.dir=PATH
PATH holds ``cifar-10-batches-py/`` (CIFAR-10's python version, as distributed) or is that
folder; ``--set data.name=cifar100`` reads ``cifar-100-python/`` instead. The images stay
uint8 on the devices, normalised per channel there; training batches are cropped (pad 4) and
flipped (data/inputs.py).

The recipe is the paper's (section 4.2), as its widely used reimplementations run it: SGD,
lr 0.1, momentum 0.9, weight decay 1e-4 on every weight, batch 128, 200 epochs, lr divided by
10 at epochs 100 and 150 (``retrain.schedule = step``). ReLU reaches 91.25% in the paper (its
45k/5k split) and about 91.7% trained on all 50,000 images; expect that for the relu baseline.
The search is the race (strategies/race.py) on 45,000 training images (5,000 held out for its
scores): the 16 candidates of group ``wide`` for 10 epochs each, the best 4 for 30 more: 280
network-epochs of 45,000 images, 1.26 retrain seeds (200 epochs of 50,000) in examples.
Not run here: this machine has no GPU (docs/cifar.md).
"""

from actsearch.configs import base_config
from actsearch.space.activations import WIDE


def get_config():
  c = base_config()
  c.data.name = "cifar10"
  c.data.augment = "crop_flip"
  c.data.val_fraction = 0.1        # 45,000 train, 5,000 val
  c.model.name = "resnet"
  c.model.depth = 20               # 3 basic blocks per stage
  c.model.widths = [16, 32, 64]
  c.search.candidates = list(WIDE)
  c.search.strategy = "race"
  c.search.race.epochs = [10, 30]
  c.search.race.keep = [4]
  c.search.batch_size = 128        # the supernet strategies (--set search.strategy=darts)
  c.search.eval_batch_size = 1000
  r = c.retrain
  r.optimizer, r.lr, r.lr_min, r.momentum = "sgd", 0.1, 0.0, 0.9
  r.schedule = "step"              # lr / 10 at 50% and 75% of the epochs
  r.weight_decay = 1e-4
  r.norm_weight_decay = None       # decayed as every other weight, as the reference runs
  r.epochs = 200
  r.batch_size = 128
  r.eval_batch_size = 1000
  return c
