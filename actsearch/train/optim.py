"""optax builders: the weight optimizer and its schedule (search and retrain), alpha's optimizer.

A weight config holds ``optimizer`` (``sgd`` with momentum, ``adam``, ``adamw``), ``lr``,
``lr_min``, ``schedule`` (``cosine``: decay from ``lr`` to ``lr_min`` over the run, as DARTS;
``warmup_cosine``: a linear rise from 0 to ``lr`` over the first ``warmup_fraction`` of the
steps, then the cosine decay (Goyal et al. 2017; Loshchilov & Hutter 2017); ``step``: ``lr``
divided by 10 at 50% and at 75% of the steps, He et al. 2016's CIFAR schedule (32k and 48k of
64k iterations; 100 and 150 of 200 epochs); ``constant``),
``momentum``, ``weight_decay`` (added to the gradient, L2, for sgd and adam; decoupled for
adamw, Loshchilov & Hutter 2019) and ``grad_clip`` (global norm).

Parameters of candidate activations (``mixed.ActParam``, attributes ``p_{candidate}__{name}``)
are weights too, with their own ``act_weight_decay`` (default 0: decay would pull PReLU's
slope or PAU's coefficients toward 0, a different function, not a smaller weight) and
``act_lr_scale`` (their updates scaled by it). ``act_weight_decay`` None (runs recorded
before the key existed) treats them as every other weight.

Batch norm's scale and bias have their own ``norm_weight_decay`` (default 0, the common
practice since Goyal et al. 2017, section 5.1: decaying them changes the normalised scale,
not the weights' size; None: as every other weight). Which weights these are, the caller
says (``norm``: the module paths of the network's ``nnx.BatchNorm`` layers,
``network.batch_norm_paths``).
"""

from __future__ import annotations

import re

import jax
import ml_collections
import optax

from actsearch.errors import UserError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "warmup_cosine", "step", "constant")
STEP_AT = (0.5, 0.75)  # ``step``: where the lr falls by 10, as fractions of the run


def weight_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Cosine decay from ``lr`` to ``lr_min`` over ``total_steps`` (DARTS: 0.025 -> 0.001), the
  same after a linear warm-up, ``lr`` divided by 10 at ``STEP_AT``, or a constant ``lr``."""
  kind = cfg.get("schedule", "cosine")
  if kind == "constant":
    return optax.constant_schedule(cfg.lr)
  if kind == "step":
    return optax.piecewise_constant_schedule(
        cfg.lr, {int(round(f * max(total_steps, 1))): 0.1 for f in STEP_AT})
  if kind == "warmup_cosine":
    total = max(total_steps, 1)
    warmup = int(round(cfg.get("warmup_fraction", 0.05) * total))
    return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, total, end_value=cfg.lr_min)
  if kind != "cosine":
    raise UserError(f"schedule is {kind!r}; known: {', '.join(SCHEDULES)}")
  return optax.cosine_decay_schedule(cfg.lr, max(total_steps, 1), alpha=cfg.lr_min / cfg.lr)


_ACT = re.compile(r"^p_[a-z0-9_]+__\w+$")


def is_act_path(path) -> bool:
  """Whether a key path of a params tree leads to a candidate activation's parameter."""
  return any(_ACT.match(str(getattr(k, "key", getattr(k, "name", "")))) for k in path)


def act_mask(params):
  """``True`` at the leaves of ``params`` that are candidate activations' parameters."""
  return jax.tree_util.tree_map_with_path(lambda path, _: is_act_path(path), params)


def _not(mask_fn):
  return lambda params: jax.tree.map(lambda m: not m, mask_fn(params))


def _module_path(path) -> tuple:
  """The path of the module a params leaf belongs to: without the variable's name (and the
  ``value`` attribute of an NNX variable)."""
  keys = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in path]
  if keys and keys[-1] == "value":
    keys = keys[:-1]
  return tuple(keys[:-1])


def norm_mask(modules):
  """A mask function: ``params`` -> True at the weights of the modules at paths ``modules``."""
  modules = frozenset(tuple(m) for m in modules)
  return lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: _module_path(path) in modules, params)


def weight_optimizer(cfg: ml_collections.ConfigDict, schedule: optax.Schedule,
                     norm=frozenset()):
  """Gradient-norm clipping, then SGD with momentum and L2 decay (DARTS' defaults), Adam with
  L2 decay, or AdamW (decoupled decay); candidate activations' parameters and batch norm's
  (the modules at paths ``norm``) with their own decay, the former with their own lr scale
  (module docstring)."""
  clip = optax.clip_by_global_norm(cfg.grad_clip)
  if cfg.optimizer not in OPTIMIZERS:
    raise UserError(f"optimizer is {cfg.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
  act_decay, act_scale = cfg.get("act_weight_decay", None), cfg.get("act_lr_scale", 1.0)
  norm_decay = cfg.get("norm_weight_decay", None)
  apart = bool(norm) and norm_decay is not None  # batch norm's weights decayed apart
  if act_decay is None and act_scale == 1.0 and not apart:  # every weight alike
    if cfg.optimizer == "adamw":
      return optax.chain(clip, optax.adamw(schedule, weight_decay=cfg.weight_decay))
    base = (optax.sgd(schedule, momentum=cfg.momentum) if cfg.optimizer == "sgd"
            else optax.adam(schedule))
    return optax.chain(clip, optax.add_decayed_weights(cfg.weight_decay), base)
  act_decay = cfg.weight_decay if act_decay is None else act_decay
  if apart:
    in_norm = norm_mask(norm)
    others = lambda params: jax.tree.map(lambda a, n: not (a or n), act_mask(params),  # noqa: E731
                                         in_norm(params))
    decay = [optax.add_decayed_weights(cfg.weight_decay, mask=others)]
    if norm_decay:
      decay.append(optax.add_decayed_weights(norm_decay, mask=in_norm))
  else:
    decay = [optax.add_decayed_weights(cfg.weight_decay, mask=_not(act_mask))]
  if act_decay:
    decay.append(optax.add_decayed_weights(act_decay, mask=act_mask))
  scale = [optax.masked(optax.scale(act_scale), act_mask)] if act_scale != 1.0 else []
  if cfg.optimizer == "adamw":  # optax.adamw's own chain, with the decays masked
    return optax.chain(clip, optax.scale_by_adam(), *decay,
                       optax.scale_by_learning_rate(schedule), *scale)
  base = (optax.sgd(schedule, momentum=cfg.momentum) if cfg.optimizer == "sgd"
          else optax.adam(schedule))
  return optax.chain(clip, *decay, base, *scale)


def arch_optimizer(cfg: ml_collections.ConfigDict):
  """Adam with L2 weight decay on alpha (DARTS: lr 3e-4, betas (0.5, 0.999), decay 1e-3)."""
  return optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                     optax.adam(cfg.lr, b1=cfg.b1, b2=cfg.b2))
