"""optax builders: the weight optimizer and its schedule (search and retrain), alpha's optimizer.

A weight config holds ``optimizer`` (``sgd`` with momentum, ``adam``, ``adamw``), ``lr``,
``lr_min``, ``schedule`` (``cosine``: decay from ``lr`` to ``lr_min`` over the run, as DARTS;
``warmup_cosine``: a linear rise from 0 to ``lr`` over the first ``warmup_fraction`` of the
steps, then the cosine decay (Goyal et al. 2017; Loshchilov & Hutter 2017); ``constant``),
``momentum``, ``weight_decay`` (added to the gradient, L2, for sgd and adam; decoupled for
adamw, Loshchilov & Hutter 2019) and ``grad_clip`` (global norm).
"""

from __future__ import annotations

import ml_collections
import optax

from actsearch.errors import UserError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "warmup_cosine", "constant")


def weight_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Cosine decay from ``lr`` to ``lr_min`` over ``total_steps`` (DARTS: 0.025 -> 0.001), the
  same after a linear warm-up, or a constant ``lr``."""
  kind = cfg.get("schedule", "cosine")
  if kind == "constant":
    return optax.constant_schedule(cfg.lr)
  if kind == "warmup_cosine":
    total = max(total_steps, 1)
    warmup = int(round(cfg.get("warmup_fraction", 0.05) * total))
    return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, total, end_value=cfg.lr_min)
  if kind != "cosine":
    raise UserError(f"schedule is {kind!r}; known: {', '.join(SCHEDULES)}")
  return optax.cosine_decay_schedule(cfg.lr, max(total_steps, 1), alpha=cfg.lr_min / cfg.lr)


def weight_optimizer(cfg: ml_collections.ConfigDict, schedule: optax.Schedule):
  """Gradient-norm clipping, then SGD with momentum and L2 decay (DARTS' defaults), Adam with
  L2 decay, or AdamW (decoupled decay)."""
  clip = optax.clip_by_global_norm(cfg.grad_clip)
  if cfg.optimizer == "adamw":
    return optax.chain(clip, optax.adamw(schedule, weight_decay=cfg.weight_decay))
  if cfg.optimizer == "sgd":
    base = optax.sgd(schedule, momentum=cfg.momentum)
  elif cfg.optimizer == "adam":
    base = optax.adam(schedule)
  else:
    raise UserError(f"optimizer is {cfg.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
  return optax.chain(clip, optax.add_decayed_weights(cfg.weight_decay), base)


def arch_optimizer(cfg: ml_collections.ConfigDict):
  """Adam with L2 weight decay on alpha (DARTS: lr 3e-4, betas (0.5, 0.999), decay 1e-3)."""
  return optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                     optax.adam(cfg.lr, b1=cfg.b1, b2=cfg.b2))
