"""A command's workdir record: ``config.json`` written at the start, compared on resume.

A run that resumes must compute what the interrupted one computed, so a workdir that holds a
run of another config is refused with one line naming the keys that differ; keys that say
only how a run goes (``configs.RUN_ONLY``: evaluation and checkpoint cadence, ...) may change,
and ``config.json`` is rewritten with them.
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np

from actsearch import checks, configs, usercode
from actsearch.errors import UserError
from actsearch.space import implementation as impl
from actsearch.train import files


def _stored(workdir: str) -> dict | None:
  """The workdir's ``config.json``, or None if it has none."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise UserError(f"{path} is unreadable ({e}); use a new --workdir") from None


def resolve(cfg: ml_collections.ConfigDict, workdir: str,
            data_path: str | None = None) -> ml_collections.ConfigDict:
  """The config a search in ``workdir`` runs, resolved once: a copy of ``cfg`` (which is never
  changed) with ``--data`` (``data_path``) and ``data.dir`` made absolute (the record's
  retrain reads them from anywhere), the groups of its candidate lists expanded (so that
  ``config.json`` and the record name each candidate), checked (``checks.check``), the user
  code it needs recorded (``code``), the values a run begun before a key existed computed
  with (``recorded_defaults``), and the concrete implementation plan (``implementation``).
  Everything after it reads the copy; ``prepare`` compares it with the workdir's."""
  c = cfg.copy_and_resolve_references()
  if data_path:
    c.data.name, c.data.path = "npz", os.path.abspath(data_path)
  if c.data.get("dir"):
    c.data.dir = os.path.abspath(c.data.dir)
  checks.expand_candidates(c)
  checks.check(c)
  c.code = usercode.code_of(c)
  recorded_defaults(workdir, c)
  c.search.implementation = implementation(workdir, c)
  return c


def implementation(workdir: str, cfg: ml_collections.ConfigDict) -> str:
  """The concrete plan (``space/implementation.py``) the run in ``workdir`` computes with:
  the one its ``config.json`` recorded, so that a resumed run computes what it began with
  whatever this machine would choose now; for a new run, the requested plan
  (``search.implementation``), ``auto`` being the machine's. In a multi-process run every
  process takes process 0's, so that all compute alike."""
  stored = _stored(workdir)
  before = None if stored is None else configs.recorded(stored, "search.implementation")
  plan = impl.resolve(cfg.search.implementation, before)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    bits = np.asarray([(p, s) in impl.parse(plan).kernel for p, s in impl.ENTRIES], np.int32)
    bits = np.asarray(multihost_utils.broadcast_one_to_all(bits))
    plan = impl.Plan(frozenset(e for e, b in zip(impl.ENTRIES, bits) if b)).spec()
  return plan


def recorded_defaults(workdir: str, cfg: ml_collections.ConfigDict) -> None:
  """A run in ``workdir`` recorded before a key of ``configs.BEFORE_RECORDED`` existed goes on
  with the value it computed with (``search.implementation`` is ``implementation``'s): set in
  ``cfg``, a command's own resolved copy."""
  stored = _stored(workdir)
  if stored is None:
    return
  defaults = configs.to_json(configs.base_config())
  for key, before in configs.BEFORE_RECORDED.items():
    if key == "search.implementation" or configs.lookup(stored, key) is not KeyError:
      continue
    if configs.lookup(configs.to_json(cfg), key) != configs.lookup(defaults, key):
      continue  # set by the user: prepare() refuses it as another config
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
      node = node.get(p) if isinstance(node, ml_collections.ConfigDict) else None
    if isinstance(node, ml_collections.ConfigDict) and leaf in node:
      node[leaf] = before


def prepare(workdir: str, cfg: ml_collections.ConfigDict, primary: bool) -> None:
  """Writes ``config.json``, or refuses a workdir that holds a run with another config."""
  path = os.path.join(workdir, "config.json")
  resolved = configs.to_json(cfg)
  stored = _stored(workdir)
  if stored is not None:
    # Keys added to the defaults since the run began, at their defaults, are no difference.
    diff = [k for k in configs.diff_keys(stored, resolved)
            if not configs.new_default(stored, resolved, k)]
    refused = [k for k in diff if k not in configs.RUN_ONLY]
    if refused:
      raise UserError(f"{workdir} holds a run with a different config ({', '.join(refused)}); "
                      "use a new --workdir or the same settings to resume")
    if diff and primary:  # only the cadence changed: the file says how the run goes on
      files.write_json_atomic(path, resolved)
  elif primary:
    os.makedirs(workdir, exist_ok=True)
    files.write_json_atomic(path, resolved)
