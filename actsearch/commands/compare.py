"""``actsearch compare`` (``make compare``): every strategy on one engine, one budget, one table.

For each task (``TASKS``: the MNIST-1D CNN and the digits MLP, each at a reduced scale, see
their experiment files) and each search seed, every strategy with a budget rule
(``compared``) searches at each budget of ``--scales`` (1 and 5 by default), in units of
what DARTS' default search of that task and seed spends (``strategy.cost.examples`` of its
record); then every found network is retrained from scratch with the task's recipe over
``--seeds`` seeds (0..N-1) on train + val and scored on the test split. How each strategy is
given a budget of ``scale`` (its ``Strategy.budget``, applied by ``cell_config``):

* ``darts`` and ``random_activation`` (one supernet, then the shortlist): at 1x the task's
  config; at ``scale`` > 1, ``search.epochs`` times ``scale`` and the shortlist widened to the
  most candidates per slot whose estimated total spend stays within ``scale`` x DARTS' 1x
  spend (``supernet.wider_shortlist``; random activation given DARTS' shortlist). Their
  spend is what their record says (a screen that finds duplicates spends less than the estimate).
* ``random``, ``evolution``, ``reinforce``: ``search.budget`` = ``scale`` x DARTS' 1x spend
  (a space smaller than the budget is evaluated whole and the search ends there).
* ``correlation``: ``round_epochs`` such that its ``rounds + 1`` trainings pass about
  ``scale`` x DARTS' 1x spend; a rule that settles early spends less (its record says what).

The table (``markdown``): per task, strategy and budget, the examples spent and trainings
(mean over search seeds), the search's wall time, each seed's found network, the retrained test
accuracy (mean and 95% interval over every search seed x retrain seed), and the paired
difference against DARTS' answer at the same budget and search seed (paired by search seed and
retrain seed). A network found twice (same choices, same recipe) is retrained once.

Each search and each retrain runs in its own ``actsearch`` process (its wall time includes
starting Python and JAX, about 5 s), which gives the memory of its compiled programs back; the
processes share JAX's persistent compilation cache (``WORKDIR/jax_cache``), so a network an
earlier cell compiled (black-box strategies compile one program per network) is read back,
as a user's repeated runs would with that cache: a cell's wall time depends on the cells run
before it, its examples spent do not. Every step resumes: a cell whose search
finished (``architecture.json`` and ``cost.json``) is not run again and keeps its recorded wall
time; a retrain that finished is read back. The table is rewritten after every cell, so an
interrupted run still shows what it has. One host (the cells' processes see its devices).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence

import ml_collections
import numpy as np

from actsearch import architecture, configs, results, stats, usercode
from actsearch.commands import retrain
from actsearch.errors import UserError
from actsearch.strategies import table
from actsearch.strategies.base import Spend
from actsearch.train import files

# task -> (experiment file, search seeds, title)
TASKS = {"digits_mlp": ("compare_digits_mlp", 3, "sklearn digits 8x8, MLP (64, 64)"),
         "mnist1d_cnn": ("compare_mnist1d_cnn", 1, "MNIST-1D (4000), 1-D CNN (3 x 25)")}
REFERENCE = "darts"


def compared() -> tuple[str, ...]:
  """The strategies with a budget rule (``Strategy.budget``), in the table's order."""
  return tuple(n for n, st in table.STRATEGIES.items() if st.budget is not None)


def cell_config(base: ml_collections.ConfigDict, strategy: str, scale: int, seed: int,
                budget: float | None, train_examples: int | None = None
                ) -> ml_collections.ConfigDict:
  """The config of one cell: ``base`` with ``strategy`` at ``scale`` times the reference
  budget ``budget`` (DARTS' 1x spend, in training examples), by the strategy's own rule
  (``Strategy.budget``); ``train_examples``: the search's train split size."""
  cfg = base.copy_and_resolve_references()
  cfg.seed = seed
  cfg.search.strategy = strategy
  rule = table.STRATEGIES[strategy].budget if strategy in compared() else None
  if rule is None:
    raise UserError(f"unknown strategy {strategy!r}; known: {', '.join(compared())}")
  rule(cfg, Spend(scale, budget, train_examples))
  return cfg


def retrain_key(arch: dict) -> str:
  """Identifies a retrain: the choices (and the learned parameters where the recipe starts
  from them), the backbone, the data and the recipe; not the search seed or its scores."""
  rec = arch.get("retrain", {})
  layers = [{"name": layer["name"], "choice": layer.get("channel_choices") or layer["choice"],
             **({"params": layer.get("params", {})}
                if rec.get("init_params") == "searched" else {})} for layer in arch["layers"]]
  blob = json.dumps({"layers": layers, "model": arch["model"], "data": arch["data"],
                     "retrain": rec}, sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def overrides(base: ml_collections.ConfigDict, cfg: ml_collections.ConfigDict) -> list[str]:
  """``KEY.PATH=VALUE`` (VALUE as JSON) for every field where ``cfg`` differs from ``base``."""
  a, b = configs.to_json(base), configs.to_json(cfg)
  return [f"{k}={json.dumps(configs.lookup(b, k))}" for k in configs.diff_keys(a, b)]


class CellFailed(RuntimeError):
  """A cell's search or retrain process failed (not bad input); its workdir keeps its newest
  checkpoint, so running compare again resumes it."""


def _actsearch(args: list[str], progress: bool, cache: str) -> None:
  """Runs ``actsearch ARGS`` in its own process, which gives back the memory of what it
  compiled (one process that compiled every network of every cell ran out of memory
  mappings), with JAX's persistent compilation cache in ``cache`` (unless the user set one):
  a program that an earlier cell compiled (the same network, trained alike) is read back."""
  cmd = [sys.executable, "-m", "actsearch", *args, *([] if progress else ["--no-progress"])]
  env = dict(os.environ)
  if "JAX_COMPILATION_CACHE_DIR" not in env:
    env.update({"JAX_COMPILATION_CACHE_DIR": os.path.abspath(cache),
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"})
  rc = subprocess.run(cmd, check=False, env=env).returncode
  if rc == 2:
    raise UserError(f"actsearch {args[0]} refused its input (the line above): "
                    f"{' '.join(args)}")
  if rc != 0:
    raise CellFailed(f"actsearch {' '.join(args)} failed (exit {rc}); its workdir keeps its "
                     "newest checkpoint: run compare again to resume")


def _cell_name(strategy: str, scale: int, seed: int) -> str:
  return f"{strategy}_x{scale}_seed{seed}"


def run_cell(task_dir: str, experiment: str, base, strategy: str, scale: int, seed: int,
             reference: dict | None, seeds: int, progress: bool) -> dict:
  """Search (timed once) and retrain of one cell, each in its own process (``_actsearch``);
  returns its row. ``experiment``: the task's experiment file, ``base`` its config."""
  cell_dir = os.path.join(task_dir, _cell_name(strategy, scale, seed))
  cache = os.path.join(os.path.dirname(os.path.abspath(task_dir)), "jax_cache")
  search_dir = os.path.join(cell_dir, "search")
  arch_path = os.path.join(search_dir, "architecture.json")
  cost_path = os.path.join(cell_dir, "cost.json")
  if not (os.path.exists(arch_path) and os.path.exists(cost_path)):
    budget = reference["strategy"]["cost"]["examples"] if reference else None
    train = reference["data"]["train"] if reference else None
    cfg = cell_config(base, strategy, scale, seed, budget, train)
    start = time.perf_counter()
    _actsearch(["search", "--config", experiment, "--workdir", search_dir,
                *[a for o in overrides(base, cfg) for a in ("--set", o)]], progress, cache)
    files.write_json_atomic(cost_path, {"search_seconds": time.perf_counter() - start})
  arch = architecture.load(arch_path)
  key = retrain_key(arch)
  retrain_dir = os.path.join(task_dir, "retrain", key)
  if not os.path.exists(os.path.join(retrain_dir, "results.json")):
    _actsearch(["retrain", arch_path, "--seeds", str(seeds), "--baselines", "",
                "--workdir", retrain_dir], progress, cache)
  report = results.load(retrain_dir)
  metric = report["metric"]
  return {"strategy": strategy, "scale": scale, "seed": seed, "found": report["found"],
          "cost": arch["strategy"]["cost"], "retrain": key,
          "search_seconds": files.read_json(cost_path)["search_seconds"], "metric": metric,
          "test": results.scores(report)}


def _order(tasks: Sequence[str], scales: Sequence[int], strategies: Sequence[str]):
  """Cells by priority: each task's first search seed whole, then the further seeds; DARTS at
  1x first in each (its spend is every other cell's budget)."""
  firsts, rest = [], []
  for task in tasks:
    for seed in range(TASKS[task][1]):
      cells = [(task, REFERENCE, 1, seed)] + [
          (task, st, sc, seed) for sc in scales for st in strategies
          if (st, sc) != (REFERENCE, 1)]
      (firsts if seed == 0 else rest).extend(cells)
  return firsts + rest


def run(tasks: Sequence[str], workdir: str, seeds: int = 5, scales: Sequence[int] = (1, 5),
        strategies: Sequence[str] | None = None, search_seeds: int | None = None,
        progress: bool = True) -> dict:
  """Runs (or resumes) every cell and writes ``compare.json`` and ``compare.md`` after each.
  ``search_seeds``: at most this many search seeds per task (default: each task's own)."""
  known = compared()
  strategies = known if strategies is None else tuple(strategies)
  unknown = [t for t in tasks if t not in TASKS] + [s for s in strategies if s not in known]
  if unknown or not tasks or not strategies:
    raise UserError(f"unknown task(s) or strategies {', '.join(unknown) or '(none)'}; tasks: "
                    f"{', '.join(TASKS)}; strategies: {', '.join(known)}")
  if not scales or any(s < 1 for s in scales) or seeds < 2:
    raise UserError("--scales takes positive integers; --seeds at least 2 (for an interval)")
  if search_seeds is not None and search_seeds < 1:
    raise UserError(f"--search-seeds must be a positive integer, got {search_seeds}")
  if REFERENCE not in strategies:
    strategies = (REFERENCE, *strategies)  # every budget is DARTS' spend
  start = time.perf_counter()
  out = {"tasks": {}, "seeds": seeds, "scales": list(scales), "seconds": 0.0,
         "provenance": retrain.provenance()}
  bases = {}
  for task, strategy, scale, seed in _order(tasks, scales, strategies):
    if search_seeds is not None and seed >= search_seeds:
      continue
    if task not in bases:
      bases[task] = usercode.load_config(configs.experiment(TASKS[task][0]))
      out["tasks"][task] = {"title": TASKS[task][2], "experiment": TASKS[task][0], "cells": []}
    task_dir = os.path.join(workdir, task)
    reference = None
    if strategy != REFERENCE or scale != 1:
      reference = architecture.load(os.path.join(task_dir, _cell_name(REFERENCE, 1, seed),
                                                 "search", "architecture.json"))
    row = run_cell(task_dir, configs.experiment(TASKS[task][0]), bases[task], strategy, scale,
                   seed, reference, seeds, progress)
    out["tasks"][task]["cells"].append(row)
    out["seconds"] = time.perf_counter() - start
    files.write_json_atomic(os.path.join(workdir, "compare.json"), out)
    files.write_text_atomic(os.path.join(workdir, "compare.md"), markdown(out))
  return out


def rows(cells: list[dict], scales: Sequence[int]) -> list[dict]:
  """One row per (strategy, scale) of a task's cells: pooled test scores with their interval,
  and the paired difference against DARTS at the same scale and search seed."""
  by = {}
  for c in cells:
    by.setdefault((c["strategy"], c["scale"]), []).append(c)
  ref = {(c["scale"], c["seed"]): c for c in cells if c["strategy"] == REFERENCE}
  out = []
  for scale in scales:
    for strategy in compared():
      group = sorted(by.get((strategy, scale), []), key=lambda c: c["seed"])
      if not group:
        continue
      values = [v for c in group for _, v in sorted(c["test"].items())]
      row = {"strategy": strategy, "scale": scale, "search_seeds": [c["seed"] for c in group],
             "found": [c["found"] for c in group],
             "examples": float(np.mean([c["cost"].get("examples", np.nan) for c in group])),
             "trainings": float(np.mean([c["cost"].get("trainings", np.nan) for c in group])),
             "search_seconds": float(np.mean([c["search_seconds"] for c in group])),
             "summary": stats.summary(values), "paired": None}
      a, b = [], []
      for c in group:
        r = ref.get((scale, c["seed"]))
        if strategy == REFERENCE or r is None:
          continue
        common = sorted(set(c["test"]) & set(r["test"]))
        a += [c["test"][s] for s in common]
        b += [r["test"][s] for s in common]
      if len(a) >= 2:
        row["paired"] = stats.paired(a, b)
      out.append(row)
  return out


def _ci(mean: float, low: float, high: float, scale: float, sign: str = "") -> str:
  if not np.isfinite(low):
    return f"{mean * scale:{sign}.2f}"
  return f"{mean * scale:{sign}.2f} [{low * scale:{sign}.2f}, {high * scale:{sign}.2f}]"


def markdown(out: dict) -> str:
  """The table of ``run``'s result (one section per task)."""
  lines = [f"# actsearch compare ({out['seeds']} retrain seeds per found network)", ""]
  for t in out["tasks"].values():
    cells = t["cells"]
    if not cells:
      continue
    metric = cells[0]["metric"]
    pct = 100.0 if metric == "test_accuracy" else 1.0
    unit = "test accuracy (%)" if pct == 100.0 else metric
    n_seeds = len({c["seed"] for c in cells})
    lines += [f"## {t['title']} (experiments/{t['experiment']}.py; {n_seeds} search "
              f"seed{'s' if n_seeds > 1 else ''})", "",
              f"| strategy | budget | examples spent | trainings | search (s) | found | "
              f"{unit}, mean [95% CI] | minus DARTS, same budget and seed [95% CI] |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows(cells, out["scales"]):
      s, p = r["summary"], r["paired"]
      diff = (_ci(p["mean_diff"], p["ci_low"], p["ci_high"], pct, "+") if p else "")
      found = "; ".join(f"{seed}: {f}" for seed, f in zip(r["search_seeds"], r["found"]))
      lines.append(f"| {r['strategy']} | {r['scale']}x | {r['examples'] / 1e6:.2f}M | "
                   f"{r['trainings']:.0f} | {r['search_seconds']:.0f} | {found} | "
                   f"{_ci(s['mean'], s['ci_low'], s['ci_high'], pct)} | {diff} |")
    lines.append("")
  lines += ["budget: in units of what DARTS' default search of the task and seed spends "
            "(training examples passed, a supernet pass counted once per candidate it mixes, "
            "its shortlist included); DARTS and random activation at 5x: 5x the epochs and "
            "the widest shortlist (candidates per slot) whose estimated spend stays within "
            "5x. examples spent, trainings, search: means over the search seeds (search: wall "
            "time of the search's own process, start-up, data and compilation included, "
            "compilations cached across cells). found: per search seed. Accuracy: every "
            "search seed's network retrained with every retrain seed (pooled); the difference "
            "is paired by search seed and retrain seed.", "",
            f"Total wall time of this run: {out['seconds']:.0f} s (cells finished earlier "
            "are read back, not rerun)."]
  return "\n".join(lines) + "\n"
