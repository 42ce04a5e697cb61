"""Config checks: values no run can use are refused before anything is written, in one line
naming the key. The keys every search reads (``check``: the candidates, the supernet's
implementation, the batch sizes, the cadence; the strategy's own by ``Strategy.check``), the
retrain recipe (``check_retrain``) and what every loop reads (``check_run``)."""

from __future__ import annotations

import ml_collections

from actsearch.errors import UserError
from actsearch.space import activations, implementation
from actsearch.strategies import table as strategies
from actsearch.train import health, losses, optim


def check(cfg: ml_collections.ConfigDict) -> None:
  """Rejects values no search can run with, naming the key: the keys every search reads
  here, the strategy's own keys by the strategy (``Strategy.check``)."""
  s = cfg.search
  check_candidates(s)
  check_act(cfg.optim.weights, "optim.weights")
  implementation.check(s.implementation)
  for key, value in (("search.epochs", s.epochs), ("search.batch_size", s.batch_size),
                     ("search.eval_batch_size", s.eval_batch_size)):
    if not isinstance(value, int) or value < 1:
      raise UserError(f"{key} must be a positive integer, got {value!r}")
  check_run(s, "search")
  losses.check(cfg.data.get("loss", losses.AUTO))
  if not isinstance(cfg.data.resident_mb, (int, float)) or cfg.data.resident_mb < 0:
    raise UserError(f"data.resident_mb must be a number >= 0, got {cfg.data.resident_mb!r}")
  strategies.get(s.strategy).check(cfg)
  check_retrain(cfg.retrain)


def check_run(node: ml_collections.ConfigDict, where: str) -> None:
  """The keys every loop reads: non-finite policy, checkpoint and evaluation cadence."""
  for key, low in (("checkpoint_every", 0), ("eval_every", 1)):
    value = node.get(key, low)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
      raise UserError(f"{where}.{key} must be an integer >= {low}, got {value!r}")
  if node.get("async_checkpoints") not in (True, False, None):
    raise UserError(f"{where}.async_checkpoints must be true, false or null, got "
                    f"{node.async_checkpoints!r}")
  if node.on_nonfinite not in health.POLICIES:
    raise UserError(f"{where}.on_nonfinite is {node.on_nonfinite!r}; known: "
                    f"{', '.join(health.POLICIES)}")
  if not isinstance(node.max_skipped, int) or isinstance(node.max_skipped, bool) \
      or node.max_skipped < 1:
    raise UserError(f"{where}.max_skipped must be a positive integer, got {node.max_skipped!r}")


INIT_PARAMS = ("initial", "searched")


def check_act(node: ml_collections.ConfigDict, where: str) -> None:
  """``act_weight_decay`` and ``norm_weight_decay`` (>= 0, or null) and ``act_lr_scale`` (>= 0;
  0 freezes the candidates' parameters, as the correlation rule's) of a weight optimizer."""
  scale = node.get("act_lr_scale", 1.0)
  for key in ("act_weight_decay", "norm_weight_decay"):
    value = node.get(key)
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                              or value < 0):
      raise UserError(f"{where}.{key} must be a number >= 0, got {value!r}")
  if not isinstance(scale, (int, float)) or isinstance(scale, bool) or scale < 0:
    raise UserError(f"{where}.act_lr_scale must be a number >= 0, got {scale!r}")


def check_candidates(s: ml_collections.ConfigDict) -> None:
  """``search.candidates`` (groups expanded), ``search.slot_candidates`` and
  ``search.param_granularity``."""
  activations.resolve(list(s.candidates))
  per_slot = s.get("slot_candidates") or {}
  for slot, names in per_slot.items():
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
      raise UserError(f"search.slot_candidates.{slot} must be a list of candidate names")
    activations.resolve(list(names))
  if s.get("param_granularity") not in (None, "layer", "channel"):
    raise UserError(f"search.param_granularity is {s.param_granularity!r}; known: layer, "
                    "channel (unset: as search.granularity)")


def expand_candidates(cfg: ml_collections.ConfigDict) -> None:
  """Replaces group names (``all``, ``fixed``, ...) in the config's candidate lists by their
  members, so that ``config.json`` and the record name each candidate."""
  s = cfg.search
  check_candidates(s)
  s.candidates = activations.expand(list(s.candidates))
  for slot in list((s.get("slot_candidates") or {}).keys()):
    s.slot_candidates[slot] = activations.expand(list(s.slot_candidates[slot]))


def check_retrain(r: ml_collections.ConfigDict) -> None:
  """Rejects retrain recipes no run can use, naming the key."""
  if r.optimizer not in optim.OPTIMIZERS:
    raise UserError(f"retrain.optimizer is {r.optimizer!r}; known: {', '.join(optim.OPTIMIZERS)}")
  if r.schedule not in optim.SCHEDULES:
    raise UserError(f"retrain.schedule is {r.schedule!r}; known: {', '.join(optim.SCHEDULES)}")
  for key in ("epochs", "batch_size", "eval_batch_size", "seeds"):
    value = r[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise UserError(f"retrain.{key} must be a positive integer, got {value!r}")
  if r.lr <= 0 or r.lr_min < 0 or r.lr_min > r.lr:
    raise UserError(f"retrain.lr must be positive and retrain.lr_min in [0, lr], got "
                    f"{r.lr} and {r.lr_min}")
  if not 0.0 <= r.warmup_fraction < 1.0:
    raise UserError(f"retrain.warmup_fraction must lie in [0, 1), got {r.warmup_fraction}")
  check_run(r, "retrain")
  if r.get("init_params", "initial") not in INIT_PARAMS:
    raise UserError(f"retrain.init_params is {r.init_params!r}; known: {', '.join(INIT_PARAMS)}")
  check_act(r, "retrain")
  if r.baselines:  # none: the found architecture alone
    activations.resolve(list(r.baselines))


