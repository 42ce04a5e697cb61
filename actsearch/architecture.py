"""The ``architecture.json`` record: a table of readers by schema version, validation, reading
and writing, the ``show`` table.

``make`` writes schema ``actsearch.architecture/v2``; ``load`` reads every version in
``READERS`` (v1 and v2) and returns the v2 form, which the commands use. A v2 record:

* ``candidates`` (the search's list), ``relaxation`` and ``granularity`` (null for strategies
  without a relaxation), ``param_granularity``, ``model``, ``data``, ``metrics``, ``seed``,
  ``retrain`` (the experiment's recipe), ``discretize`` and ``selection`` (what decided);
* ``strategy``: ``{"name": "darts", "cost": {"seconds": ..., ...}}``, the strategy that
  produced the record and what it spent (numbers by name);
* ``code``: the user code (experiment files, modules) that registered candidates or backbones
  the record names. **Nothing in a record is executed**: a command that needs them imports
  what the user passes (``--import``/``--config``) and otherwise stops with a line naming
  what to pass; ``show`` imports nothing;
* ``layers``, one per slot: ``name`` (unique), ``choice`` and its ``formula``, the slot's
  ``candidates`` (if absent: the record's), ``weights`` (relaxed weights of every candidate;
  absent in records that hold only choices), ``scores`` (per candidate, by the method that
  decided), ``params`` (learned parameters of the chosen candidates:
  ``{candidate: {param: {"shape": [...], "value": nested lists}}}``), and with per-channel
  choices ``channel_choices``.

A record written by hand needs only ``schema``, ``model``, ``data`` and ``layers`` of ``name``
and ``choice`` (``_handwritten``): ``actsearch retrain`` compares choices a user made with the
same statistics. A v1 record (parameters as plain numbers or lists, ``strategy`` a name) is
read into this form.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from actsearch import plots
from actsearch.errors import UserError
from actsearch.train.files import read_json, write_json_atomic
from actsearch.version import __version__

SCHEMA = "actsearch.architecture/v2"
SCHEMA_V1 = "actsearch.architecture/v1"


def make(layers: list[dict], *, candidates: Sequence[str], relaxation: str | None,
         granularity: str | None, model: dict, data: dict, metrics: dict, seed: int,
         discretize: str = "argmax", selection: dict | None = None,
         retrain: dict | None = None, strategy: str = "darts",
         cost: dict | None = None, code: Sequence[str] = (),
         param_granularity: str | None = None) -> dict[str, Any]:
  """The record; ``retrain`` is the experiment's retrain recipe, so that ``actsearch retrain``
  needs nothing but the file (records written before it existed fall back to the defaults)."""
  arch = {"schema": SCHEMA, "candidates": list(candidates), "relaxation": relaxation,
          "granularity": granularity,
          "param_granularity": param_granularity or granularity or "layer",
          "discretize": discretize, "layers": layers,
          "model": model, "data": data, "metrics": {k: float(v) for k, v in metrics.items()},
          "seed": int(seed),
          "strategy": {"name": strategy, "cost": {k: float(v) for k, v in (cost or {}).items()}},
          "code": list(code), "actsearch_version": __version__}
  if selection is not None:
    arch["selection"] = selection
  if retrain is not None:
    arch["retrain"] = retrain
  return arch


def _fail(path: str, what: str):
  """One line, whatever names the record holds (a key may contain a line break)."""
  line = f"{path}: {what}".replace("\r", "\\r").replace("\n", "\\n")
  raise UserError(line)


def finite_number(v) -> bool:
  """A JSON number (not a bool) that is finite as a float: an integer beyond float's range is
  not."""
  if not isinstance(v, (int, float)) or isinstance(v, bool):
    return False
  try:
    return math.isfinite(v)
  except OverflowError:  # an integer beyond float's range
    return False


def _common(arch: dict, path: str, optional_kinds: tuple) -> None:
  for key, kind in (("candidates", list), ("layers", list), ("model", dict), ("data", dict),
                    ("metrics", dict), ("seed", int)):
    if not isinstance(arch.get(key), kind) or (kind is int and isinstance(arch[key], bool)):
      _fail(path, f"field {key!r} is missing or not a {kind.__name__}")
  for key, kind in optional_kinds:
    if key in arch and not isinstance(arch[key], kind):
      names = kind.__name__ if isinstance(kind, type) else " or ".join(
          "null" if k is type(None) else k.__name__ for k in kind)
      _fail(path, f"field {key!r} must be a {names}")
  cands = arch["candidates"]
  if not cands or not all(isinstance(c, str) for c in cands):
    _fail(path, "'candidates' must be a non-empty list of names")
  if not all(finite_number(v) for v in arch["metrics"].values()):
    _fail(path, "'metrics' must map names to finite numbers")
  if not arch["layers"]:
    _fail(path, "'layers' is empty")
  names = [layer.get("name") if isinstance(layer, dict) else None for layer in arch["layers"]]
  for i, name in enumerate(names):
    if not isinstance(name, str):
      _fail(path, f"layers[{i}] must be an object with a 'name'")
  dup = sorted({n for n in names if names.count(n) > 1})
  if dup:
    _fail(path, f"slot name {dup[0]!r} appears twice in 'layers'")
  if "selection" in arch and isinstance(arch["selection"], dict):
    _check_selection(arch["selection"], path)


def _check_selection(sel: dict, path: str) -> None:
  """``selection``: ``method`` (a string), optional ``score`` (its name), ``seconds``, and
  ``evaluated``: a count, or the networks trained as ``{"choices": {slot: candidate},
  "score": number}``."""
  if not isinstance(sel.get("method", "argmax"), str) \
      or not isinstance(sel.get("score", ""), str) or not finite_number(sel.get("seconds", 0.0)):
    _fail(path, "'selection' must hold 'method' and 'score' (strings) and 'seconds' (a number)")
  nets = sel.get("evaluated", 0)
  if isinstance(nets, list):
    for net in nets:
      if not (isinstance(net, dict) and isinstance(net.get("choices"), dict)
              and all(isinstance(c, str) for c in net["choices"].values())
              and isinstance(net.get("score"), (int, float))
              and not isinstance(net["score"], bool)):  # a diverged network's may be NaN
        _fail(path, "'selection.evaluated' must list {\"choices\": {slot: candidate}, "
                    "\"score\": number}")
  elif not finite_number(nets):
    _fail(path, "'selection.evaluated' must be a count or a list of networks")
  rule = sel.get("simpler")
  if rule is not None and not (
      isinstance(rule, dict) and isinstance(rule.get("best"), dict)
      and all(isinstance(c, str) for c in rule["best"].values())
      and all(finite_number(rule.get(k)) for k in
              ("best_score", "standard_error", "best_parameters", "parameters"))):
    _fail(path, "'selection.simpler' must hold 'best' ({slot: candidate}) and the numbers "
                "'best_score', 'standard_error', 'best_parameters', 'parameters'")


def _check_layer(layer: dict, where: str, cands: list, path: str) -> None:
  """A layer's choice, weights, scores and channel choices (both versions)."""
  if layer.get("choice") not in cands:
    _fail(path, f"{where}: choice {layer.get('choice')!r} is not one of the candidates")
  weights = layer.get("weights")
  if weights is not None and (not isinstance(weights, dict) or set(weights) != set(cands)
                              or not all(finite_number(w) for w in weights.values())):
    _fail(path, f"{where}: 'weights' must map every candidate to a number")
  scores = layer.get("scores", {})
  if not isinstance(scores, dict) or not set(scores) <= set(cands) or not all(
      isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
    _fail(path, f"{where}: 'scores' must map candidates to numbers")
  if not isinstance(layer.get("params", {}), dict):
    _fail(path, f"{where}: 'params' must be an object")
  chans = layer.get("channel_choices")
  if chans is not None and (not isinstance(chans, list) or not chans
                            or not all(isinstance(c, str) and c in cands for c in chans)):
    _fail(path, f"{where}: 'channel_choices' must list candidates")


def _read_v1(arch: dict, path: str) -> dict[str, Any]:
  """Schema v1: every layer holds a ``choice`` among ``candidates`` and a relaxed weight of
  every candidate; parameters as numbers or lists. Returned in the v2 form."""
  _common(arch, path, (("relaxation", str), ("granularity", str), ("discretize", str),
                       ("selection", dict), ("retrain", dict), ("strategy", str)))
  for key in ("relaxation", "granularity"):
    if key not in arch:
      _fail(path, f"field {key!r} is missing or not a str")
  cands = arch["candidates"]
  out = dict(arch)
  layers = []
  for i, layer in enumerate(arch["layers"]):
    where = f"layers[{i}] ({layer['name']})"
    if not isinstance(layer.get("weights"), dict):
      _fail(path, f"{where}: 'weights' must map every candidate to a number")
    _check_layer(layer, where, cands, path)
    params = {}
    for cand, values in layer.get("params", {}).items():
      if not isinstance(values, dict):
        _fail(path, f"{where}: params of {cand!r} must be an object")
      params[cand] = {}
      for p, v in values.items():
        arr = _array(v, f"{where}: parameter {cand}.{p}", path)
        params[cand][p] = {"shape": list(arr.shape), "value": arr.tolist()}
    layers.append({**layer, "candidates": list(cands), "params": params})
  out["layers"] = layers
  out["strategy"] = {"name": arch.get("strategy", "darts"), "cost": {}}
  out["param_granularity"] = arch["granularity"]
  out["code"] = []
  return out


def _array(value, what: str, path: str) -> np.ndarray:
  """A number or nested lists of numbers, as a float64 array (rectangular, finite)."""
  def ok(v):
    return finite_number(v) if not isinstance(v, list) else all(ok(x) for x in v)
  if not ok(value):
    _fail(path, f"{what} must be a finite number or nested lists of them")
  try:
    arr = np.asarray(value, np.float64)
  except ValueError:
    _fail(path, f"{what} is not rectangular")
  if arr.dtype == object:
    _fail(path, f"{what} is not rectangular")
  return arr


def _handwritten(arch: dict) -> dict:
  """A record written by hand holds only ``model``, ``data`` and ``layers`` of ``name`` and
  ``choice``: the candidates default to the choices, ``metrics`` to none, ``seed`` to 0, and
  without a relaxation, metrics or strategy the strategy is ``hand``."""
  arch = dict(arch)
  layers = arch.get("layers")
  if "candidates" not in arch and isinstance(layers, list) \
      and all(isinstance(layer, dict) for layer in layers):
    arch["candidates"] = list(dict.fromkeys(
        c for layer in layers for c in (layer.get("channel_choices") or [layer.get("choice")])
        if isinstance(c, str)))
  if not {"metrics", "relaxation", "strategy"} & set(arch):  # no search behind it
    arch["strategy"] = {"name": "hand", "cost": {}}
  arch.setdefault("metrics", {})
  arch.setdefault("seed", 0)
  return arch


def _read_v2(arch: dict, path: str) -> dict[str, Any]:
  """Schema v2 (module docstring)."""
  arch = _handwritten(arch)
  _common(arch, path, (("relaxation", (str, type(None))), ("granularity", (str, type(None))),
                       ("param_granularity", str), ("discretize", str), ("selection", dict),
                       ("retrain", dict), ("strategy", dict), ("code", list)))
  strategy = arch.get("strategy", {"name": "darts"})
  if not isinstance(strategy.get("name"), str) or not isinstance(strategy.get("cost", {}), dict) \
      or not all(finite_number(v) for v in strategy.get("cost", {}).values()):
    _fail(path, "'strategy' must be {\"name\": string, \"cost\": {name: number}}")
  if not all(isinstance(c, str) and c for c in arch.get("code", [])):
    _fail(path, "'code' must list files or modules")
  for i, layer in enumerate(arch["layers"]):
    where = f"layers[{i}] ({layer['name']})"
    cands = layer.get("candidates", arch["candidates"])
    if not isinstance(cands, list) or not cands or not all(isinstance(c, str) for c in cands):
      _fail(path, f"{where}: 'candidates' must be a non-empty list of names")
    if not isinstance(layer.get("formula", ""), str):
      _fail(path, f"{where}: 'formula' must be a string")
    _check_layer(layer, where, cands, path)
    chosen = set(layer.get("channel_choices") or [layer["choice"]])
    for cand, values in layer.get("params", {}).items():
      if cand not in chosen:
        _fail(path, f"{where}: params of {cand!r}, which is not chosen")
      if not isinstance(values, dict):
        _fail(path, f"{where}: params of {cand!r} must be an object")
      for p, v in values.items():
        what = f"{where}: parameter {cand}.{p}"
        if not isinstance(v, dict) or set(v) != {"shape", "value"}:
          _fail(path, f"{what} must be {{\"shape\": [...], \"value\": ...}}")
        shape = v["shape"]
        if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
          _fail(path, f"{what}: 'shape' must list sizes")
        arr = _array(v["value"], what, path)
        if list(arr.shape) != shape:
          _fail(path, f"{what} has shape {list(arr.shape)}, the record says {shape}")
  out = dict(arch)  # the optional fields at the values ``make`` gives them
  out.setdefault("param_granularity", arch.get("granularity") or "layer")
  out.setdefault("strategy", {"name": "darts", "cost": {}})
  out["strategy"] = {"cost": {}, **out["strategy"]}
  out.setdefault("code", [])
  return out


# The readers, one per schema version: each checks a record of its version and returns it in
# the form the commands use (v2's). A new version is one entry (and ``SCHEMA``, if it is the
# one ``make`` writes); a record of a version not listed is refused with one line.
READERS: dict[str, Callable[[dict, str], dict[str, Any]]] = {
    SCHEMA_V1: _read_v1,
    SCHEMA: _read_v2,
}


def layer_candidates(arch: dict, layer: dict) -> list[str]:
  return layer.get("candidates", arch["candidates"])


def needed(arch: dict) -> list[str]:
  """The candidates a record's network is built from (its choices)."""
  out: list[str] = []
  for layer in arch["layers"]:
    for c in [layer["choice"], *(layer.get("channel_choices") or [])]:
      if c not in out:
        out.append(c)
  return out


def require(arch: dict, path: str, names: Sequence[str] | None = None) -> None:
  """Every candidate the record needs (``names``; default: its choices) is registered here;
  otherwise one line naming the user code the record says registered them, to pass with
  ``--import`` (nothing is imported from the record itself)."""
  from actsearch import usercode
  data = arch.get("data", {})
  usercode.require(arch.get("code") or [], path, needed(arch) if names is None else names,
                   arch.get("model", {}).get("name"), data.get("loss"),
                   data.get("name"))


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


def _param_text(values: dict) -> str:
  parts = []
  for p, v in values.items():
    arr = np.asarray(v["value"], np.float64)
    parts.append(f"{p}={float(arr):.3g}" if arr.ndim == 0 else
                 f"{p}[{'x'.join(map(str, arr.shape))}] mean {arr.mean():.3g}")
  return ", ".join(parts)


def table(arch: dict[str, Any]) -> str:
  """Slot, choice and its value, runner-up and its value, and the margin between them, by what
  decided (``plots.decider``: the selection's scores where it measured some, else the relaxed
  weights); the learned parameters of the choices; what decided."""
  kind = "weight"
  values = []
  for layer in arch["layers"]:
    v, k = plots.decider(layer)
    values.append(v)
    kind = "score" if k == "score" else kind
  rows = [("slot", "choice", kind, "runner-up", kind, "margin")]
  digits = 4 if kind == "score" else 3
  for layer, v in zip(arch["layers"], values):
    if layer["choice"] not in v:
      rows.append((layer["name"], layer["choice"], "-", "-", "-", "-"))
      continue
    ranked = sorted(v.items(), key=lambda kv: -kv[1])
    w_choice = v[layer["choice"]]
    runner = next(((c, w) for c, w in ranked if c != layer["choice"]), ("-", float("nan")))
    rows.append((layer["name"], layer["choice"], f"{w_choice:.{digits}f}", runner[0],
                 f"{runner[1]:.{digits}f}", f"{w_choice - runner[1]:.{digits}f}"))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  strategy = arch.get("strategy", {})
  name = strategy.get("name", "darts") if isinstance(strategy, dict) else strategy
  how = (f"{arch['relaxation']} relaxation per {arch['granularity']}"
         if arch.get("relaxation") else f"strategy {name}")
  head = f"{len(arch['layers'])} slots, {len(arch['candidates'])} candidates, {how}"
  metrics = ", ".join(f"{k} {v:.4g}" for k, v in arch["metrics"].items())
  label = "supernet" if arch.get("relaxation") else "found"
  out = [head, *lines] + ([f"{label}: {metrics}"] if metrics else [])
  learned = [(layer["name"], c, vals) for layer in arch["layers"]
             for c, vals in layer.get("params", {}).items() if vals]
  if learned:
    out.append(f"learned parameters (per {arch.get('param_granularity', 'layer')}):")
    out += [f"  {slot}: {c} {_param_text(vals)}" for slot, c, vals in learned]
  if arch.get("code"):
    out.append("user code: " + ", ".join(arch["code"]) + " (not imported by show)")
  sel = arch.get("selection")
  if sel and sel.get("method", "argmax") != "argmax":
    count = sel.get("evaluated")
    count = len(count) if isinstance(count, list) else count
    rounds = sel.get("rounds")
    done = (f"{count} evaluated, " if count is not None else "") + (
        f"{len(rounds)} rounds, " if isinstance(rounds, list) else "")
    out.append(f"discretize: {sel['method']}, score = {sel.get('score', '?')} "
               f"({done}{float(sel.get('seconds', 0.0)):.1f} s)")
    lines = [_ranked(layer.get("scores", {})) for layer in arch["layers"]]
    if len(lines) > 1 and len(set(lines)) == 1:  # a screen scores every slot alike
      out.append(f"  every slot: {lines[0]}")
    else:
      out += [f"  {layer['name']}: {line}" for layer, line in zip(arch["layers"], lines)]
    out += _race(sel)
    out += _decided(arch, sel)
    out += _simpler(sel.get("simpler"))
  out += _cost(strategy)
  return "\n".join(out)


def _race(sel: dict[str, Any]) -> list[str]:
  """A race's cycles: how many networks each trained, for how many epochs."""
  cycles = sel.get("cycles") if sel.get("method") == "race" else None
  if not isinstance(cycles, list) or not cycles:
    return []
  steps = " -> ".join(f"{len(g.get('scores', {}))} for {g.get('epochs')} epochs"
                      for g in cycles)
  return [f"  race: {steps}"]


def _cost(strategy) -> list[str]:
  """What the search spent: training examples (and networks trained), seconds."""
  cost = strategy.get("cost") if isinstance(strategy, dict) else None
  if not isinstance(cost, dict) or "examples" not in cost:
    return []
  parts = [f"{int(cost['examples']):,} training examples"]
  if "trainings" in cost:
    parts.append(f"{int(cost['trainings'])} networks trained")
  if "seconds" in cost:
    parts.append(f"{float(cost['seconds']):.1f} s")
  return ["cost: " + ", ".join(parts)]


def _simpler(rule: dict | None) -> list[str]:
  """The line saying that the one-standard-error rule chose a simpler network than the best
  scoring one (``discretize.choose``)."""
  if not rule:
    return []
  return [f"  one-standard-error rule: the best score, {_choices(rule['best'])} "
          f"{rule['best_score']:.4g} ({rule['best_parameters']} learned activation "
          f"parameters), beat the chosen by less than its standard error "
          f"{rule['standard_error']:.3g}; the chosen has {rule['parameters']}"]


SHOWN_SCORES = 12  # candidates' scores show prints per slot (the best)


def _ranked(scores: dict[str, float]) -> str:
  ranked = sorted(scores.items(), key=lambda kv: -kv[1] if math.isfinite(kv[1]) else math.inf)
  text = "  ".join(f"{c} {v:.4g}" for c, v in ranked[:SHOWN_SCORES])
  return text + (f"  ... ({len(ranked) - SHOWN_SCORES} more)" if len(ranked) > SHOWN_SCORES
                 else "")


def _decided(arch: dict[str, Any], sel: dict[str, Any]) -> list[str]:
  """Lines saying which slots' choices the weights did not make (their largest weight is
  another candidate's), and, for a shortlist, how the network the weights favour scored
  against the chosen one."""
  if not any(layer.get("weights") for layer in arch["layers"]):  # no supernet behind it
    nets = sel.get("evaluated")
    cached = sel.get("cached")
    return [f"decided by {sel['method']} (no relaxed weights)"
            + (f": the best of {len(nets)} networks trained" if isinstance(nets, list) else "")
            + (f", {cached} proposals answered by the cache" if cached else "")]
  overruled = []
  for layer in arch["layers"]:
    weights = layer.get("weights") or {}
    if weights and layer["choice"] in weights:
      top = max(weights, key=weights.get)
      if top != layer["choice"]:
        rank = 1 + sum(w > weights[layer["choice"]] for w in weights.values())
        overruled.append(f"{layer['name']} ({layer['choice']}: weight rank {rank} of "
                         f"{len(weights)}; {top} had the largest)")
  if not overruled:
    return [f"decided: the weights (every choice has its slot's largest weight; "
            f"{sel['method']} agreed)"]
  lines = [f"decided by {sel['method']}, not the weights, in " + "; ".join(overruled)]
  nets = sel.get("evaluated")
  if isinstance(nets, list) and nets:
    chosen = {layer["name"]: layer["choice"] for layer in arch["layers"]}
    favourite = {layer["name"]: max(layer["weights"], key=layer["weights"].get)
                 if layer.get("weights") else layer["choice"] for layer in arch["layers"]}
    mine = next((n for n in nets if n["choices"] == chosen), None)
    theirs = next((n for n in nets if n["choices"] == favourite), None)
    if mine is not None and theirs is not None:
      lines.append(f"  the weights' favourite network {_choices(favourite)} scored "
                   f"{theirs['score']:.4g}; the chosen {_choices(chosen)} scored "
                   f"{mine['score']:.4g}")
    elif mine is not None:
      lines.append(f"  the chosen {_choices(chosen)} scored {mine['score']:.4g} of "
                   f"{len(nets)} networks trained; the weights' favourite "
                   f"{_choices(favourite)} was not trained")
  return lines


def _choices(net: dict[str, str]) -> str:
  return " / ".join(net.values())
