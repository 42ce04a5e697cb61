"""The ``architecture.json`` record: a table of readers by schema version, validation, reading
and writing, the ``show`` table.

``make`` writes schema ``actsearch.architecture/v1`` (see DESIGN.md); ``load`` reads every
version in ``READERS``. Each layer holds the ``choice`` (made by a method of ``discretize``),
the ``weights`` of all candidates, and ``params``, the learned parameters of the chosen
parametric candidates as ``{candidate: {param: value}}``.
With per-channel granularity a layer also holds ``channel_choices`` (one per channel);
then ``choice`` and ``weights`` describe the mean over channels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from actsearch.errors import UserError
from actsearch.train.files import read_json, write_json_atomic
from actsearch.version import __version__

SCHEMA = "actsearch.architecture/v1"


def make(layers: list[dict], *, candidates: Sequence[str], relaxation: str, granularity: str,
         model: dict, data: dict, metrics: dict, seed: int, discretize: str = "argmax",
         selection: dict | None = None, retrain: dict | None = None,
         strategy: str = "darts") -> dict[str, Any]:
  """The record; ``retrain`` is the experiment's retrain recipe, so that ``actsearch retrain``
  needs nothing but the file (records written before it existed fall back to the defaults)."""
  arch = {"schema": SCHEMA, "candidates": list(candidates), "relaxation": relaxation,
          "granularity": granularity, "discretize": discretize, "layers": layers,
          "model": model, "data": data, "metrics": {k: float(v) for k, v in metrics.items()},
          "seed": int(seed), "strategy": strategy, "actsearch_version": __version__}
  if selection is not None:
    arch["selection"] = selection
  if retrain is not None:
    arch["retrain"] = retrain
  return arch


def _fail(path: str, what: str):
  raise UserError(f"{path}: {what}")


def _read_v1(arch: dict, path: str) -> dict[str, Any]:
  """Schema v1: every layer holds a ``choice`` among ``candidates`` and a relaxed weight of
  every candidate."""
  for key, kind in (("candidates", list), ("layers", list), ("relaxation", str),
                    ("granularity", str), ("model", dict), ("data", dict), ("metrics", dict),
                    ("seed", int)):
    if not isinstance(arch.get(key), kind):
      _fail(path, f"field {key!r} is missing or not a {kind.__name__}")
  for key, kind in (("discretize", str), ("selection", dict), ("retrain", dict),  # optional
                    ("strategy", str)):
    if key in arch and not isinstance(arch[key], kind):
      _fail(path, f"field {key!r} must be a {kind.__name__}")
  cands = arch["candidates"]
  if not cands or not all(isinstance(c, str) for c in cands):
    _fail(path, "'candidates' must be a non-empty list of names")
  if not arch["layers"]:
    _fail(path, "'layers' is empty")
  for i, layer in enumerate(arch["layers"]):
    where = f"layers[{i}]"
    if not isinstance(layer, dict) or not isinstance(layer.get("name"), str):
      _fail(path, f"{where} must be an object with a 'name'")
    if layer.get("choice") not in cands:
      _fail(path, f"{where} ({layer['name']}): choice {layer.get('choice')!r} is not one of "
            "the candidates")
    weights = layer.get("weights")
    if not isinstance(weights, dict) or set(weights) != set(cands) or not all(
        isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w)
        for w in weights.values()):
      _fail(path, f"{where} ({layer['name']}): 'weights' must map every candidate to a number")
    scores = layer.get("scores", {})
    if not isinstance(scores, dict) or not set(scores) <= set(cands) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
      _fail(path, f"{where} ({layer['name']}): 'scores' must map candidates to numbers")
    if not isinstance(layer.get("params", {}), dict):
      _fail(path, f"{where} ({layer['name']}): 'params' must be an object")
    chans = layer.get("channel_choices")
    if chans is not None and (not isinstance(chans, list) or not all(c in cands for c in chans)):
      _fail(path, f"{where} ({layer['name']}): 'channel_choices' must list candidates")
  return arch


# The readers, one per schema version: each checks a record of its version and returns it in
# the form the commands use. A new version is one entry (and ``SCHEMA``, if it is the one
# ``make`` writes); a record of a version not listed is refused with one line.
READERS: dict[str, Callable[[dict, str], dict[str, Any]]] = {
    "actsearch.architecture/v1": _read_v1,
}


def validate(arch: Any, path: str = "architecture") -> dict[str, Any]:
  """Checks a parsed architecture against the reader of its schema version; returns it in the
  commands' form or raises ``UserError``."""
  if not isinstance(arch, dict):
    _fail(path, "expected a JSON object at the top level")
  reader = READERS.get(arch.get("schema")) if isinstance(arch.get("schema"), str) else None
  if reader is None:
    _fail(path, f"schema is {arch.get('schema')!r}; this actsearch reads "
          f"{', '.join(map(repr, READERS))}")
  return reader(arch, path)


def load(path: str) -> dict[str, Any]:
  """Reads and validates ``architecture.json``; any problem is one ``UserError`` line."""
  if not os.path.exists(path):
    raise UserError(f"architecture file not found: {path}")
  return validate(read_json(path), path)


def save(path: str, arch: dict[str, Any]) -> None:
  write_json_atomic(path, validate(arch, path))


def table(arch: dict[str, Any]) -> str:
  """Slot, choice and its weight, runner-up and its weight, and the margin between them."""
  rows = [("slot", "choice", "weight", "runner-up", "weight", "margin")]
  for layer in arch["layers"]:
    ranked = sorted(layer["weights"].items(), key=lambda kv: -kv[1])
    w_choice = layer["weights"][layer["choice"]]
    runner = next(((c, w) for c, w in ranked if c != layer["choice"]), ("-", float("nan")))
    rows.append((layer["name"], layer["choice"], f"{w_choice:.3f}", runner[0],
                 f"{runner[1]:.3f}", f"{w_choice - runner[1]:.3f}"))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  head = (f"{len(arch['layers'])} slots, {len(arch['candidates'])} candidates, "
          f"{arch['relaxation']} relaxation per {arch['granularity']}")
  metrics = ", ".join(f"{k} {v:.4g}" for k, v in arch["metrics"].items())
  out = [head, *lines] + ([f"supernet: {metrics}"] if metrics else [])
  sel = arch.get("selection")
  if sel and sel.get("method", "argmax") != "argmax":
    count = sel.get("evaluated")
    count = len(count) if isinstance(count, list) else count
    out.append(f"discretize: {sel['method']}, score = {sel.get('score', '?')} "
               f"({count} evaluated, {float(sel.get('seconds', 0.0)):.1f} s)")
    for layer in arch["layers"]:
      ranked = sorted(layer.get("scores", {}).items(), key=lambda kv: -kv[1])
      out.append(f"  {layer['name']}: " + "  ".join(f"{c} {v:.4g}" for c, v in ranked))
  return "\n".join(out)
