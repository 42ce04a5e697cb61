"""Backbones (what is searched): one module per backbone (``mlp``, ``cnn1d``, ``cnn2d``,
``resnet``, ``vit``), a user's own model (``user``: its slots marked inline,
``register_model``), a registry (``registry``: ``register``, ``build``, the slot factories,
``slots``), how the engine runs any of them (``network``: the random streams a model is built
with, train and eval modes, batch norm across devices, the split into state) and the layers
the backbones share (``taps``: dense layers that record what the second-order hypergradient
needs).

Every backbone is called as ``model(x, key=None, *, train=True)`` and holds its activation
slots as modules (``MixedActivation`` while searching, ``FixedActivation`` when retrained),
found by type and named by the backbone (``block{i}/act``; the ResNet's
``stage{s}/block{b}/act1``, the ViT's ``block{i}/mlp/act``).
"""

from actsearch.models import cnn1d, cnn2d, mlp, resnet, vit  # noqa: E402,F401,I001  (each registers its backbone)
from actsearch.models.registry import (  # noqa: F401  (the family's names, as before the move)
  BACKBONES,
  Builder,
  SlotFactory,
  build,
  fixed_slots,
  param_count,
  record_slots,
  register,
  search_slots,
  slot_name,
  slots,
  switch_slots,
  uniform_slots,
  widths_of,
)
