"""``actsearch reproduce`` (``make reproduce``): the project's headline table.

For each task: search with the experiment's defaults, retrain the found architecture and the
baselines over seeds with the experiment's recipe, and write one combined ``reproduce.md``
(per task: found choices, search cost in seconds, each variant's mean and 95% interval, the
paired difference against ReLU, the verdict) and ``reproduce.json``. Every step resumes: a
task whose search or retrain finished is not run again, and its recorded cost is kept.

A task is one of ``TASKS`` (``experiments/NAME.py``) or a user's experiment file
(``--tasks my_experiment.py``): its row is titled by the first line of the file's docstring,
its runs go to ``WORKDIR/<file's name>``, and the file is imported every time the task runs
(a backbone, candidate or loss it registers is found on resume in a fresh process).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import jax

from actsearch import architecture, configs, results, stats, usercode
from actsearch.commands import retrain, search
from actsearch.errors import UserError
from actsearch.train import files

TASKS = {"mnist1d_cnn": "MNIST-1D, 1-D CNN (3 x 25 channels)",
         "mnist1d_mlp": "MNIST-1D, MLP (100, 100)",
         "digits_mlp": "sklearn digits 8x8, MLP (64, 64)",
         "digits_cnn2d": "sklearn digits 8x8 images, 2-D CNN (16, 32; dense 64)",
         "digits_resnet": "sklearn digits 8x8 images, ResNet-8 with batch norm (8, 16, 32)",
         # not in the default table: the whole catalogue against the eight defaults
         "mnist1d_cnn_catalogue": "MNIST-1D, 1-D CNN, the whole catalogue",
         "mnist1d_cnn_default8": "MNIST-1D, 1-D CNN, the eight default candidates"}


def is_file(task: str) -> bool:
  """A task named by a user's experiment file rather than by ``TASKS``."""
  return task.endswith(".py")


def name_of(task: str) -> str:
  """A task's directory and row name: its ``TASKS`` key, or its file's name without ``.py``."""
  return os.path.splitext(os.path.basename(task))[0] if is_file(task) else task


def _title(task: str) -> str:
  if not is_file(task):
    return TASKS[task]
  doc = (usercode.import_code(os.path.abspath(task)).__doc__ or "").strip()
  return doc.splitlines()[0].strip() if doc else name_of(task)


def run_task(task: str, workdir: str, seeds: int, progress: bool = True) -> dict:
  """Search (timed once) and retrain of one task; returns its row of the table."""
  task_dir = os.path.join(workdir, name_of(task))
  search_dir = os.path.join(task_dir, "search")
  arch_path = os.path.join(search_dir, "architecture.json")
  cost_path = os.path.join(task_dir, "search_cost.json")
  # imported every time: the code it registers is needed by the retrain of a resumed run
  cfg = usercode.load_config(os.path.abspath(task) if is_file(task) else configs.experiment(task))
  if not (os.path.exists(arch_path) and os.path.exists(cost_path)):
    # Both timed phases start from an empty compilation cache (``cold``), as a fresh process
    # would: neither takes programs another task or the search compiled.
    cold()
    start = time.perf_counter()
    search.run(cfg, search_dir, progress=progress)
    cost = {"search_seconds": time.perf_counter() - start}
    if jax.process_index() == 0:
      files.write_json_atomic(cost_path, cost)
  cost = files.read_json(cost_path)
  if "relu_seed_seconds" not in cost:
    # The unit of the search's cost: one seed of the task's relu network retrained alone with
    # the recipe, data loading and compilation included, as the search's time includes them.
    relu_dir = os.path.join(task_dir, "relu_one_seed")
    relu_record = os.path.join(relu_dir, "architecture.json")
    if jax.process_index() == 0:
      os.makedirs(relu_dir, exist_ok=True)
      files.write_json_atomic(relu_record, relu_everywhere(files.read_json(arch_path)))
    cold()
    start = time.perf_counter()
    retrain.run(relu_record, os.path.join(relu_dir, "retrain"), seeds=1, baselines=[],
                progress=progress)
    cost["relu_seed_seconds"] = time.perf_counter() - start
    if jax.process_index() == 0:
      files.write_json_atomic(cost_path, cost)
  report = retrain.run(arch_path, os.path.join(task_dir, "retrain"), seeds=seeds,
                       progress=progress)
  return {"task": name_of(task), "title": _title(task), "search_seconds": cost["search_seconds"],
          "relu_seed_seconds": cost["relu_seed_seconds"], "report": report,
          "search_examples": architecture.load(arch_path)["strategy"]["cost"].get("examples"),
          "seed_examples": seed_examples(report)}


def cold() -> None:
  """Empties JAX's in-process compilation caches (``jax.clear_caches``): what is timed next
  compiles every program it runs, as in a new process. Without it the relu seed, timed after
  the search, reused the programs the search had compiled (the digits ResNet's relu seed:
  9.0 s so, 16.9 s from empty caches; docs/yardstick.md), and each task's search those of
  the tasks before it."""
  jax.clear_caches()


def seed_examples(report: dict) -> int:
  """Training examples one retrain seed passes: epochs of whole batches of train + val."""
  r = report["config"]["retrain"]
  n = report["protocol"]["train_examples"]
  return int(r["epochs"] * (n // r["batch_size"]) * r["batch_size"])


def relu_everywhere(record: dict) -> dict:
  """A record of the same model and data with relu in every slot (a record by hand)."""
  out = {k: record[k] for k in ("schema", "model", "data", "retrain", "code", "candidates",
                                "param_granularity") if k in record}
  out["candidates"] = ["relu"]
  out["layers"] = [{"name": layer["name"], "choice": "relu"} for layer in record["layers"]]
  out["strategy"] = {"name": "hand"}
  return out


def run(tasks: Sequence[str], workdir: str, seeds: int = 5, progress: bool = True) -> dict:
  unknown = [t for t in tasks if t not in TASKS and not is_file(t)]
  if unknown or not tasks:
    raise UserError(f"unknown task(s) {', '.join(unknown) or '(none)'}; known: "
                    f"{', '.join(TASKS)}, or an experiment file (.py)")
  names = [name_of(t) for t in tasks]
  if len(set(names)) < len(names):
    raise UserError(f"--tasks names one task twice ({', '.join(names)}): each task's runs go "
                    "to WORKDIR/<name>")
  start = time.perf_counter()
  rows = [run_task(t, workdir, seeds, progress) for t in tasks]
  out = {"tasks": rows, "seeds": seeds, "seconds": time.perf_counter() - start,
         "provenance": retrain.provenance()}
  if jax.process_index() == 0:
    files.write_json_atomic(os.path.join(workdir, "reproduce.json"), out)
    files.write_text_atomic(os.path.join(workdir, "reproduce.md"), markdown(out))
  return out


def _ci(s: dict, scale: float) -> str:
  return (f"{s['mean'] * scale:.2f} [{s['ci_low'] * scale:.2f}, {s['ci_high'] * scale:.2f}]")


# What a user would pick anyway: the found network must beat the best of these to win.
USUAL = ("relu", "gelu", "silu", "elu")


def against_usual(report: dict) -> dict | None:
  """The paired difference of the found network against the best (by mean) of the usual
  activations among the report's baselines, with its verdict; None without any."""
  higher = report["higher_is_better"]
  usual = [b for b in USUAL if b in report["paired"]]
  if not usual:
    return None
  means = {b: report["summary"][b]["mean"] for b in usual}
  best = max(usual, key=means.get) if higher else min(usual, key=means.get)
  p = report["paired"][best]
  low, high = p["ci_low"], p["ci_high"]
  better, worse = (low > 0, high < 0) if higher else (high < 0, low > 0)
  return {"baseline": best, **p, "verdict": "wins" if better else "loses" if worse else "ties"}


def markdown(out: dict) -> str:
  """One table: per task the found choices, search cost, each variant's mean test accuracy
  with its 95% interval, the paired difference against the best of the usual activations
  (``USUAL``) with its verdict, and the verdict against the best of every baseline."""
  baselines = []
  for row in out["tasks"]:
    for name in row["report"]["variants"]:
      if name != results.FOUND and name not in baselines:
        baselines.append(name)
  lines = [f"# actsearch reproduce ({out['seeds']} retrain seeds)", "",
           "Test accuracy (%), mean [95% CI] over seeds; every variant retrained from scratch "
           "on train + val with the task's recipe, the same seeds for all (paired).", "",
           "| task | found | search (s) | relu seed (s) | ratio | found acc | "
           + " | ".join(baselines) + f" | found - best of {' / '.join(USUAL)} [95% CI] | "
           "verdict vs best of every row |",
           "| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in baselines)
           + " | --- | --- |"]
  for row in out["tasks"]:
    rep = row["report"]
    scale = 100.0 if rep["metric"] == "test_accuracy" else 1.0
    one = row["relu_seed_seconds"]
    cells = [_ci(rep["summary"][b], scale) if b in rep["summary"] else "" for b in baselines]
    usual = against_usual(rep)
    vs_usual = (f"{usual['mean_diff'] * scale:+.2f} [{usual['ci_low'] * scale:+.2f}, "
                f"{usual['ci_high'] * scale:+.2f}] {usual['verdict']} ({usual['baseline']})"
                if usual else "")
    examples = row.get("search_examples")
    in_examples = (f" ({examples / row['seed_examples']:.1f}x in examples)"
                   if examples and row.get("seed_examples") else "")
    lines.append(f"| {row['title']} | {rep['found']} | {row['search_seconds']:.1f} | "
                 f"{one:.1f} | {row['search_seconds'] / one:.1f}x{in_examples} | "
                 f"{_ci(rep['summary'][results.FOUND], scale)} | "
                 + " | ".join(cells) + f" | {vs_usual} | {rep.get('verdict', '')} "
                 f"({rep.get('best_baseline', '')}) |")
  lines += _found_against_found(out["tasks"])
  lines += ["", "search: the search with its selection; relu seed: the task's relu network "
            "retrained alone with one seed and the task's recipe; both in-process wall times "
            "with data loading and compilation, in the same run, each from empty compilation "
            "caches. A verdict is \"wins\" "
            "when the paired 95% interval of the difference lies above zero, \"loses\" when "
            "below, \"ties\" otherwise.",
            "", f"Total wall time: {out['seconds']:.0f} s. Protocols: "
            + "; ".join(f"{r['task']}: {r['report']['protocol']['train_examples']} train, "
                        f"{r['report']['protocol']['test_examples']} test"
                        for r in out["tasks"]) + "."]
  return "\n".join(lines) + "\n"


def _same_setting(a: dict, b: dict) -> bool:
  """Two tasks' retrains train the same backbone on the same data with the same recipe."""
  ca, cb = a["report"].get("config", {}), b["report"].get("config", {})
  return all(ca.get(k) == cb.get(k) and ca.get(k) is not None
             for k in ("data", "model", "retrain"))


def _found_against_found(rows: list[dict]) -> list[str]:
  """For tasks that differ only in their search (the whole catalogue against the eight
  defaults): the paired difference of their found networks, seed by seed."""
  lines = []
  for i, a in enumerate(rows):
    for b in rows[i + 1:]:
      if not _same_setting(a, b):
        continue
      ra, rb = a["report"], b["report"]
      scale = 100.0 if ra["metric"] == "test_accuracy" else 1.0
      va, vb = results.scores(ra), results.scores(rb)
      seeds = sorted(set(va) & set(vb))
      if len(seeds) < 2:
        continue
      p = stats.paired([va[s] for s in seeds], [vb[s] for s in seeds])
      lines.append(f"Found of {a['task']} ({ra['found']}) - found of {b['task']} "
                   f"({rb['found']}): {p['mean_diff'] * scale:+.2f} "
                   f"[{p['ci_low'] * scale:+.2f}, {p['ci_high'] * scale:+.2f}] "
                   f"(paired over seeds {', '.join(map(str, seeds))}).")
  return ["", *lines] if lines else []
