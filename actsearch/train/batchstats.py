r"""Batch norm's running averages, recalibrated for the network a score is read from.

A supernet's running averages were collected under its mixture (DARTS) or under sampled
candidates (random activation); a network read from it with its slots pinned (the
``pinned`` and ``perturbation`` selections) normalises with statistics of another network.
Single-path one-shot search recalibrates them before it scores a sub-network (Guo et al.
2020, SPOS, section 3.4); here as precise batch norm does (Wu & Johnson 2021, "Rethinking
'Batch' in BatchNorm", section 3): the network in train mode on ``batches`` batches of the
train split, every ``nnx.BatchNorm``'s momentum set to 0, so that each pass leaves the
batch's own statistics, and the running averages set to their mean over the batches,

.. math:: \hat\mu = \frac1K \sum_{k=1}^K \mu_{B_k}, \qquad
          \hat\sigma^2 = \frac1K \sum_{k=1}^K \sigma^2_{B_k}.

A network without batch norm is returned as it is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from actsearch import data
from actsearch.models import network

BATCHES = 20  # batches of the train split a recalibration passes (SPOS: 20,000 images)
_TAG = 0x62617463  # folded into the draws of a recalibration's passes (dropout)


def recalibrate(graphdef, params, arch, rest, x: np.ndarray, batch_size: int, seed: int,
                batches: int = BATCHES, inputs: data.Inputs = data.IDENTITY):
  """``rest`` with every batch statistic the mean, over ``batches`` batches of ``x`` (drawn
  by ``data.epoch_order(len(x), batch_size, seed, 0)``, made inputs by ``inputs``), of the
  statistics the network computes on each in train mode (module docstring)."""
  if not network.has_batch_stats(rest):
    return rest
  order = data.epoch_order(len(x), min(batch_size, len(x)), seed, 0)[:batches]

  @jax.jit
  def one(params, arch, rest, xb, k):
    model = network.merge(graphdef, params, arch, rest, train=True, draw=[_TAG, k])
    for _, node in nnx.iter_graph(model):
      if isinstance(node, nnx.BatchNorm):
        node.momentum = 0.0
    model(xb, None, train=True)
    return network.rest_after(model, rest)

  passes = [one(params, arch, rest, inputs.normalise(x[idx]), k)
            for k, idx in enumerate(order)]
  return jax.tree.map(
      lambda old, *new: old.replace(jnp.mean(jnp.stack([v[...] for v in new]), axis=0))
      if isinstance(old, nnx.BatchStat) else old,
      rest, *passes, is_leaf=lambda v: isinstance(v, nnx.Variable))
