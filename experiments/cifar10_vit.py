"""CIFAR-10 with ViT-Ti (Touvron et al. 2021 sizes, patch 4): which activation in each MLP?

Run:  actsearch search --config experiments/cifar10_vit.py --workdir runs/cifar10_vit \\
        --set data.dir=PATH
PATH as in experiments/cifar10_resnet20.py. The model is models/vit.py at its defaults: 64
patches of 4x4 pixels and a class token, width 192, 12 pre-norm blocks of 3 heads and an MLP
of 768 units whose activation is the block's slot (12 slots; GELU in the paper).

The recipe is a common from-scratch one for small images (AdamW, lr 1e-3 after a linear
warm-up over the first 5% of the steps, cosine decay to 0, weight decay 0.05, batch 128, 200
epochs, crop and flip only): expect GELU near 80% (our estimate from published small-image
ViT runs without AutoAugment, mixup or label smoothing; they reach 90% and more with them,
which actsearch does not provide). The search is the race, as on the ResNet: 16 candidates
for 10 epochs, the best 4 for 30 more (1.26 retrain seeds in examples).
Not run here: this machine has no GPU (docs/cifar.md).
"""

import ml_collections

from actsearch.configs import experiment, load_config


def get_config():
  c = load_config(experiment("cifar10_resnet20"))  # its data, candidates and race
  c.model = ml_collections.ConfigDict({
      "name": "vit", "patch": 4, "dim": 192, "depth": 12, "heads": 3, "mlp_dim": 768,
      "dropout": 0.0})
  r = c.retrain
  r.optimizer, r.lr, r.lr_min = "adamw", 1e-3, 0.0
  r.schedule, r.warmup_fraction = "warmup_cosine", 0.05
  r.weight_decay = 0.05
  r.norm_weight_decay = 0.0        # layer norm's scale and bias not decayed
  r.grad_clip = 1.0
  return c
