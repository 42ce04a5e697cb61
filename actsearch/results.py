"""The retrain's report, ``results.json`` (schema ``actsearch.results/v1``), beside the
record's (``architecture``): what it holds, how it is summarised, and its one reader.

A report: ``schema``, ``architecture`` (the record's path), ``found`` (its choices),
``layers``, ``variants`` (``found`` and each baseline: ``seeds``, one row per retrain seed
with ``seed``, ``test_loss``, ``train_loss``, ``wall_time_s``, ``param_count`` and, for
classification, ``test_accuracy``; ``wall_time_s``, ``steps``, ``description``), ``metric``
and ``higher_is_better``, ``summary`` (per variant: mean, std, 95% interval), ``paired``
(found minus each baseline, paired by seed), ``best_baseline`` and ``verdict`` (where there
are baselines), ``protocol`` (examples, seeds), ``config`` and ``provenance``. Each variant's
row is also its ``VARIANT/result.json`` while the retrain runs (``read_result``).
"""

from __future__ import annotations

import os

from actsearch import architecture, stats
from actsearch.errors import UserError
from actsearch.train import files

SCHEMA = "actsearch.results/v1"
FOUND = "found"  # the variant of the record's network; the baselines are named by candidate


_SEED_FIELDS = ("test_loss", "train_loss", "wall_time_s")


def validate_result(result, path: str) -> dict:
  """Checks a variant's ``result.json`` (as ``train_variant`` returns it); raises ``UserError``
  on anything else."""
  def fail(what):
    raise UserError(f"{path}: {what}; delete it to train that variant again")
  if not isinstance(result, dict):
    fail("expected a JSON object")
  seeds = result.get("seeds")
  if not isinstance(seeds, list) or not seeds:
    fail("'seeds' must be a non-empty list")
  for i, row in enumerate(seeds):
    if not isinstance(row, dict) or not isinstance(row.get("seed"), int) or isinstance(
        row.get("seed"), bool):
      fail(f"seeds[{i}] must be an object with an integer 'seed'")
    for key in _SEED_FIELDS + (("test_accuracy",) if "test_accuracy" in row else ()):
      value = row.get(key)
      if not architecture.finite_number(value):
        fail(f"seeds[{i}].{key} must be a finite number")
    if not isinstance(row.get("param_count"), int) or isinstance(row.get("param_count"), bool):
      fail(f"seeds[{i}].param_count must be an integer")
  for key in ("wall_time_s", "steps"):
    if not isinstance(result.get(key), (int, float)) or isinstance(result.get(key), bool):
      fail(f"'{key}' must be a number")
  if not isinstance(result.get("description", ""), str):
    fail("'description' must be a string")
  return result


def read_result(path: str) -> dict:
  """A variant's ``result.json``, validated; any problem is one ``UserError`` line."""
  return validate_result(files.read_json(path), path)


def summarize(results: dict[str, dict], metric: str, higher: bool) -> dict:
  """Per-variant summaries, paired differences of ``found`` against each baseline, the verdict
  against the best baseline (by mean)."""
  values = {name: [row[metric] for row in res["seeds"]] for name, res in results.items()}
  summary = {name: stats.summary(v) for name, v in values.items()}
  baselines = {k: v for k, v in values.items() if k != FOUND}
  paired = {name: stats.paired(values[FOUND], v) for name, v in baselines.items()}
  out = {"metric": metric, "higher_is_better": higher, "summary": summary, "paired": paired}
  if baselines:
    best = stats.best_variant(baselines, higher_is_better=higher)
    out["best_baseline"] = best
    out["verdict"] = stats.verdict(values[FOUND], values[best], higher_is_better=higher)
  return out


def load(retrain_dir: str) -> dict:
  """The report of the finished retrain in ``retrain_dir``, checked: its schema and every
  variant's rows; any problem is one ``UserError`` line."""
  path = os.path.join(retrain_dir, "results.json")
  if not os.path.isfile(path):
    raise UserError(f"{retrain_dir} holds no finished retrain (no results.json)")
  report = files.read_json(path)
  if not isinstance(report, dict) or report.get("schema") != SCHEMA:
    raise UserError(f"{path}: not a retrain's report (schema "
                    f"{report.get('schema') if isinstance(report, dict) else None!r}, "
                    f"expected {SCHEMA!r})")
  variants = report.get("variants")
  if not isinstance(variants, dict) or FOUND not in variants:
    raise UserError(f"{path}: 'variants' must hold {FOUND!r}")
  for name, result in variants.items():
    validate_result(result, f"{path} (variant {name})")
  if report.get("metric") not in ("test_accuracy", "test_loss"):
    raise UserError(f"{path}: 'metric' must be test_accuracy or test_loss")
  return report


def scores(report: dict, variant: str = FOUND) -> dict[int, float]:
  """``{seed: the report's metric}`` of one variant."""
  return {row["seed"]: row[report["metric"]] for row in report["variants"][variant]["seeds"]}
