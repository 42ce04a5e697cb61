"""User code: the files and modules a user names (``--import``, ``--config``), run once per
process, and which of them a config or a record needs.

Everything a user can add is an entry of a registry (``actsearch.registry``): candidates,
backbones, losses, datasets, strategies. What user code registers while it loads is recorded
as coming from it; a run records that code (``code_of``) and a fresh process that lacks it is
refused with one line naming it (``require``: "pass --import FILE"). Nothing is imported from
a record: the user decides what code runs.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

import ml_collections

from actsearch import registry
from actsearch.errors import UserError
from actsearch.space import activations

_IMPORTED: dict = {}  # user code loaded in this process: by path and content, or module


def _is_file(ref: str) -> bool:
  return ref.endswith(".py") or os.path.sep in ref


def _ref(ref: str) -> str:
  """How user code is recorded: a file by its absolute path, a module by its name."""
  return os.path.abspath(ref) if _is_file(ref) else ref


def import_code(ref: str):
  """Imports user code the user names (``--import``, ``--config``): a ``.py`` file, run once
  per process, or an importable module. What it registers is recorded as coming from
  ``ref``. Failures are one ``UserError`` line."""
  is_file = _is_file(ref)
  if is_file and not os.path.isfile(ref):
    raise UserError(f"file not found: {ref}")
  # a file again: once per content (a file rewritten in between runs again)
  key = (os.path.abspath(ref), os.stat(ref).st_mtime_ns, os.path.getsize(ref)) if is_file \
      else ref
  if key in _IMPORTED:
    return _IMPORTED[key]
  with registry.loading(_ref(ref)):
    try:
      if is_file:
        spec = importlib.util.spec_from_file_location(
            f"actsearch_experiment_{abs(hash(key[0]))}", ref)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
      else:
        module = importlib.import_module(ref)
    except SyntaxError as e:
      raise UserError(f"{ref}: syntax error at line {e.lineno}: {e.msg}") from None
    except UserError as e:
      raise UserError(f"{ref}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any failure of user code is bad input
      raise UserError(f"{ref}: failed to load ({type(e).__name__}: {e})") from None
  _IMPORTED[key] = module
  return module


def _named(s: ml_collections.ConfigDict) -> list[str]:
  """Every candidate name a search config gives: ``search.candidates``, then each slot's own."""
  return list(s.candidates) + [n for v in (s.get("slot_candidates") or {}).values() for n in v]


def _entries(model: str | None, loss: str | None, dataset: str | None,
             strategy: str | None) -> list[tuple[registry.Registry, str]]:
  """The registries' entries named (not the candidates): backbone, loss, dataset, strategy."""
  from actsearch.data.datasets import DATASETS
  from actsearch.models.registry import BACKBONES
  from actsearch.strategies.table import STRATEGIES
  from actsearch.train import losses
  named = [(BACKBONES, model), (losses.LOSSES, None if loss == losses.AUTO else loss),
           (DATASETS, dataset), (STRATEGIES, strategy)]
  return [(r, n) for r, n in named if n]


def code_of(cfg: ml_collections.ConfigDict) -> list[str]:
  """The user code that registered what a config names: its candidates, backbone, loss,
  dataset and strategy (in that order, each file once)."""
  refs = activations.code_refs(_named(cfg.search))
  for reg, name in _entries(cfg.model.name, cfg.data.get("loss"), cfg.data.get("name"),
                            cfg.search.get("strategy")):
    ref = reg.code(name)
    if ref and ref not in refs:
      refs.append(ref)
  return refs


def require(code: Sequence[str], where: str, candidates: Sequence[str] = (),
            model: str | None = None, loss: str | None = None, dataset: str | None = None,
            strategy: str | None = None) -> None:
  """Everything named is registered here; else one ``UserError`` naming the user code
  (``code``, as a run recorded it) to pass with ``--import``."""
  activations.require(list(candidates), code, where)
  for reg, name in _entries(model, loss, dataset, strategy):
    reg.require(name, code, where)


def check_code(cfg: ml_collections.ConfigDict, where: str) -> None:
  """Everything a stored config names is registered here (``require``)."""
  require(list(cfg.get("code") or []), where, activations.expand(_named(cfg.search)),
          cfg.model.name, cfg.data.get("loss"), cfg.data.get("name"), cfg.search.strategy)


def load_config(path: str) -> ml_collections.ConfigDict:
  """Runs ``get_config()`` of an experiment file (``import_code``)."""
  if not os.path.isfile(path):
    raise UserError(f"config file not found: {path}")
  module = import_code(path)
  if not hasattr(module, "get_config"):
    raise UserError(f"{path} defines no get_config()")
  with registry.loading(_ref(path)):  # what get_config() registers comes from the file
    try:
      cfg = module.get_config()
    except UserError as e:
      raise UserError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any failure of user code is bad input
      raise UserError(f"{path}: get_config() failed ({type(e).__name__}: {e})") from None
  if not isinstance(cfg, ml_collections.ConfigDict):
    raise UserError(f"{path}: get_config() must return an ml_collections.ConfigDict")
  return cfg


