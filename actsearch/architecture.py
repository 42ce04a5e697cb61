"""The ``architecture.json`` record: schema, validation, atomic read/write, the ``show`` table.

Schema ``actsearch.architecture/v1`` (see DESIGN.md). Each layer holds the ``choice``
(made by a method of ``discretize``), the ``weights`` of all candidates, and ``params``, the
learned parameters of the chosen parametric candidates as ``{candidate: {param: value}}``.
With per-channel granularity a layer also holds ``channel_choices`` (one per channel);
then ``choice`` and ``weights`` describe the mean over channels.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from actsearch import hooks
from actsearch.errors import UserError

SCHEMA = "actsearch.architecture/v1"


def make(layers: list[dict], *, candidates: Sequence[str], relaxation: str, granularity: str,
         model: dict, data: dict, metrics: dict, seed: int, discretize: str = "argmax",
         selection: dict | None = None, retrain: dict | None = None) -> dict[str, Any]:
  """The record; ``retrain`` is the experiment's retrain recipe, so that ``actsearch retrain``
  needs nothing but the file (records written before it existed fall back to the defaults)."""
  from actsearch import __version__
  arch = {"schema": SCHEMA, "candidates": list(candidates), "relaxation": relaxation,
          "granularity": granularity, "discretize": discretize, "layers": layers,
          "model": model, "data": data, "metrics": {k: float(v) for k, v in metrics.items()},
          "seed": int(seed), "actsearch_version": __version__}
  if selection is not None:
    arch["selection"] = selection
  if retrain is not None:
    arch["retrain"] = retrain
  return arch


def _fail(path: str, what: str):
  raise UserError(f"{path}: {what}")


def validate(arch: Any, path: str = "architecture") -> dict[str, Any]:
  """Checks a parsed architecture against the schema; returns it or raises ``UserError``."""
  if not isinstance(arch, dict):
    _fail(path, "expected a JSON object at the top level")
  if arch.get("schema") != SCHEMA:
    _fail(path, f"schema is {arch.get('schema')!r}, expected {SCHEMA!r}")
  for key, kind in (("candidates", list), ("layers", list), ("relaxation", str),
                    ("granularity", str), ("model", dict), ("data", dict), ("metrics", dict),
                    ("seed", int)):
    if not isinstance(arch.get(key), kind):
      _fail(path, f"field {key!r} is missing or not a {kind.__name__}")
  for key, kind in (("discretize", str), ("selection", dict), ("retrain", dict)):  # optional
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


def load(path: str) -> dict[str, Any]:
  """Reads and validates ``architecture.json``; any problem is one ``UserError`` line."""
  if not os.path.exists(path):
    raise UserError(f"architecture file not found: {path}")
  return validate(read_json(path), path)


def write_text_atomic(path: str, text: str) -> None:
  """Writes a text file whole or not at all."""
  write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes a file through a temporary file and a rename: readers never see half a file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    hooks.at("export")  # test hook: killed here, ``path`` is untouched
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON whole or not at all."""
  write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str) -> Any:
  """Parsed JSON of a file; a missing, unreadable or malformed file is one ``UserError``."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise UserError(f"file not found: {path}") from None
  except json.JSONDecodeError as e:
    raise UserError(f"{path}: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") \
        from None
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f"{path}: cannot read ({e})") from None


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
