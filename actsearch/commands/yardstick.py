"""``actsearch yardstick``: how well a search's ranking of the candidates matches the truth.

The truth for a task (an experiment file) is how each candidate's network trains alone: every
slot the candidate, the retrain's recipe (``retrain.*``) on as many examples as the retrain
uses (the search's train + val), scored on examples that neither the search nor the test
split holds, over seeds ``TRUTH_SEEDS`` (1000-1005) that no ranking method uses:

* MNIST-1D: the task's train + val, scored on ``HELD_OUT`` examples generated with another
  data seed (``data.data_seed + 1000``), none of them the task's;
* any other data: 5-fold cross-validation over train + val (each seed's score is the mean of
  its five folds).

Beside it: the truth's own agreement (the Spearman correlation between the mean scores of
seeds 1000-1002 and of 1003-1005); the 4000-example truth, what ``screen`` measures (each
candidate's network trained on the search's train split alone and scored on its val split,
seeds 1000-1002); and, with ``--per-slot``, each slot's own candidates with the other slots
at the truth's best candidate (seeds 1000-1002), reported, not a target.

Each method (``METHODS``: a search with some settings) runs in ``WORKDIR/methods/NAME``; its
ranking is the per-candidate ``scores`` of its record (the mean over slots of each
candidate's rank; a candidate a method eliminated early ranks by the round it reached), scored
by Spearman's and Kendall's correlation with the truth's mean, whether the truth's best is in
its top 3, and its cost in training examples and in seconds, each also in units of one retrain
seed. Everything resumes: a finished training is read back, an unfinished one continues.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from actsearch import configs, data, models, stats, usercode
from actsearch.errors import UserError
from actsearch.models import network
from actsearch.train import files, trainer
from actsearch.train.objective import Objective

TRUTH_SEEDS = tuple(range(1000, 1006))
HELD_OUT = 8000       # MNIST-1D: fresh examples the truth is scored on
FOLDS = 5             # other data: cross-validation folds over train + val
SPLIT_SEED = 0        # the retrain's split of the training data (``retrain.SPLIT_SEED``)


def truth_folds(cfg: ml_collections.ConfigDict) -> list[data.Splits]:
  """The data the truth trains and scores on: each a ``Splits`` whose train + val is what a
  network trains on and whose test is what it is scored on."""
  splits = data.load(cfg.data, SPLIT_SEED)
  if cfg.data.name == "mnist1d":
    fresh = data.mnist1d(HELD_OUT, cfg.data.get("data_seed", 42) + 1000)
    x = np.concatenate([fresh["x_train"], fresh["x_test"]]).astype(np.float32)
    y = np.concatenate([fresh["y_train"], fresh["y_test"]]).astype(splits.y_train.dtype)
    return [data.Splits(splits.x_train, splits.y_train, splits.x_val, splits.y_val, x, y,
                        splits.task, splits.num_outputs, splits.loss)]
  x = np.concatenate([splits.x_train, splits.x_val])
  y = np.concatenate([splits.y_train, splits.y_val])
  order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
  out = []
  for part in np.array_split(order, FOLDS):
    rest = np.setdiff1d(order, part)
    out.append(data.Splits(x[rest], y[rest], x[rest][:0], y[rest][:0], x[part], y[part],
                           splits.task, splits.num_outputs, splits.loss))
  return out


def screen_fold(cfg: ml_collections.ConfigDict) -> data.Splits:
  """The 4000-example truth's data: the search's train split, scored on its val split."""
  splits = data.load(cfg.data, SPLIT_SEED)
  return data.Splits(splits.x_train, splits.y_train, splits.x_train[:0], splits.y_train[:0],
                     splits.x_val, splits.y_val, splits.task, splits.num_outputs, splits.loss)


def granularity(cfg: ml_collections.ConfigDict) -> str:
  return cfg.search.get("param_granularity") or cfg.search.granularity


def train_scores(cfg: ml_collections.ConfigDict, splits: data.Splits, layers: dict[str, str],
                 workdir: str, seeds: Sequence[int], progress: bool = False) -> dict:
  """A network (``layers``: one candidate per slot; ``"*"``: every slot) trained with the
  retrain recipe on ``splits``' train + val over ``seeds`` (together) and scored on its test
  split: ``{"scores": [per seed, higher is better], "seconds": ...}``; read back from
  ``workdir/result.json`` once written."""
  path = os.path.join(workdir, "result.json")
  if os.path.exists(path):
    return files.read_json(path)
  slot = (models.uniform_slots(layers["*"], granularity(cfg)) if "*" in layers else
          models.fixed_slots({n: {"choice": c} for n, c in layers.items()}, granularity(cfg)))
  built = [models.build(cfg.model, splits.input_shape, splits.num_outputs, slot,
                        network.rngs(s)) for s in seeds]
  graphdef, state = trainer.stack_models(built)
  objective = Objective.of(graphdef, splits)
  x = np.concatenate([splits.x_train, splits.x_val])
  y = np.concatenate([splits.y_train, splits.y_val])
  state, seconds = trainer.fit(cfg.retrain, objective, state, x, y, workdir, list(seeds),
                               [f"seed{s}" for s in seeds], key="train", progress=progress,
                               desc="truth", resident_mb=cfg.data.resident_mb)
  out = trainer.score(objective, state, splits.x_test, splits.y_test,
                      cfg.retrain.eval_batch_size, "test")
  scores = out["test/accuracy"] if splits.task == data.CLASSIFICATION else -out["test/loss"]
  result = {"layers": dict(layers), "seeds": [int(s) for s in seeds],
            "scores": [float(v) for v in scores], "seconds": seconds}
  files.write_json_atomic(path, result)
  jax.clear_caches()  # each truth network compiles its own programs: free them
  return result


def _mean_over_folds(results: list[dict]) -> list[float]:
  return list(np.mean([r["scores"] for r in results], axis=0))


def truth(cfg: ml_collections.ConfigDict, workdir: str, progress: bool = False,
          per_slot: bool = False) -> dict:
  """The truth of ``cfg``'s task (module docstring), computed or read back from
  ``workdir``."""
  cands = list(cfg.search.candidates)
  folds = truth_folds(cfg)
  per_seed, small, seconds = {}, {}, 0.0
  for cand in cands:
    results = [train_scores(cfg, fold, {"*": cand},
                            os.path.join(workdir, "truth", f"fold{i}", cand), TRUTH_SEEDS,
                            progress) for i, fold in enumerate(folds)]
    per_seed[cand] = _mean_over_folds(results)
    seconds += sum(float(r["seconds"]) for r in results)
  for cand in cands:
    result = train_scores(cfg, screen_fold(cfg), {"*": cand},
                          os.path.join(workdir, "truth4000", cand), TRUTH_SEEDS[:3], progress)
    small[cand] = result["scores"]
    seconds += float(result["seconds"])
  mean = {c: float(np.mean(v)) for c, v in per_seed.items()}
  best = max(cands, key=lambda c: mean[c])
  first = [float(np.mean(per_seed[c][:3])) for c in cands]
  second = [float(np.mean(per_seed[c][3:])) for c in cands]
  out = {"task": cfg.get("task_name", ""), "candidates": cands, "seeds": list(TRUTH_SEEDS),
         "folds": len(folds), "per_seed": per_seed, "mean": mean,
         "standard_error": {c: stats.standard_error(v) for c, v in per_seed.items()},
         "best": best, "agreement": stats.spearman(first, second),
         "truth4000": {c: float(np.mean(v)) for c, v in small.items()},
         "truth4000_spearman": stats.spearman([mean[c] for c in cands],
                                              [float(np.mean(small[c])) for c in cands])}
  if per_slot:
    out["per_slot"] = slot_truth(cfg, best, workdir, progress)
  out["seconds"] = seconds  # the trainings' own times, summed (a resumed truth counts each once)
  return out


def slot_truth(cfg: ml_collections.ConfigDict, best: str, workdir: str,
               progress: bool = False) -> dict[str, dict[str, float]]:
  """Per slot, each candidate's score with the other slots at ``best`` (seeds 1000-1002, the
  first fold)."""
  probe = models.build(cfg.model, data.load(cfg.data, SPLIT_SEED).input_shape,
                       data.load(cfg.data, SPLIT_SEED).num_outputs,
                       models.uniform_slots(best, granularity(cfg)), network.rngs(0))
  names = [n for n, _ in models.slots(probe)]
  fold = truth_folds(cfg)[0]
  out = {}
  for name in names:
    row = {}
    for cand in cfg.search.candidates:
      layers = {n: (cand if n == name else best) for n in names}
      key = "uniform" if cand == best else f"{name.replace('/', '_')}={cand}"
      row[cand] = float(np.mean(train_scores(
          cfg, fold, layers, os.path.join(workdir, "per_slot", key), TRUTH_SEEDS[:3],
          progress)["scores"]))
    out[name] = row
  return out


def ranking(record: dict) -> dict[str, float]:
  """A record's per-candidate score for the ranking: the mean over slots of the candidate's
  place among the slot's ``scores`` (0 the worst; ties share a place); a candidate a slot did
  not score is below every scored one, and where the selection says how many rounds each
  candidate reached (``selection.rounds``: a race), the round counts first."""
  rounds = (record.get("selection") or {}).get("rounds") or {}
  places: dict[str, list[int]] = {}
  for layer in record["layers"]:
    scores = layer.get("scores") or {}
    keys = {c: (rounds.get(c, 0), _finite(scores.get(c, -np.inf)))
            for c in layer["candidates"]}
    place = {k: i for i, k in enumerate(sorted(set(keys.values())))}
    for c, k in keys.items():
      places.setdefault(c, []).append(place[k])
  return {c: float(np.mean(p)) for c, p in places.items()}


def _finite(v) -> float:
  v = float(v)
  return v if np.isfinite(v) else -np.inf


def score_method(record: dict, true: dict, retrain_seed_examples: int,
                 retrain_seed_seconds: float | None) -> dict:
  """How ``record``'s ranking matches the truth: correlations, the truth's best in its top 3,
  its cost."""
  mine = ranking(record)
  cands = [c for c in true["candidates"] if c in mine]
  a = [mine[c] for c in cands]
  b = [true["mean"][c] for c in cands]
  top3 = sorted(cands, key=lambda c: -mine[c])[:3]
  cost = (record.get("strategy") or {}).get("cost") or {}
  examples = int(cost.get("examples", 0))
  seconds = float(cost.get("seconds", 0.0))
  chosen = {layer["name"]: layer["choice"] for layer in record["layers"]}
  return {"spearman": stats.spearman(a, b), "kendall": stats.kendall(a, b),
          "top3": top3, "best_in_top3": true["best"] in top3, "chosen": chosen,
          "within_se": within_one_se(chosen, true),
          "examples": examples, "examples_in_seeds": examples / retrain_seed_examples,
          "seconds": seconds,
          "seconds_in_seeds": (seconds / retrain_seed_seconds if retrain_seed_seconds
                               else None)}


def within_one_se(chosen: dict[str, str], true: dict) -> bool | None:
  """Whether a chosen network scores on the truth within one standard error of the truth's
  best: known where it holds one candidate in every slot (the truth's networks), else None."""
  if len(set(chosen.values())) != 1:
    return None
  cand = next(iter(chosen.values()))
  best = true["best"]
  return bool(true["mean"][best] - true["mean"][cand] <= true["standard_error"][best])


def retrain_seed_examples(cfg: ml_collections.ConfigDict) -> int:
  """Training examples one retrain seed passes: ``retrain.epochs`` epochs of whole batches of
  train + val."""
  splits = data.load(cfg.data, SPLIT_SEED)
  n = len(splits.x_train) + len(splits.x_val)
  return cfg.retrain.epochs * (n // cfg.retrain.batch_size) * cfg.retrain.batch_size


def load_task(task: str, sets: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """An experiment (``experiments/NAME.py`` or a file) with ``--set`` overrides."""
  path = task if task.endswith(".py") else configs.experiment(task)
  if not os.path.isfile(path):
    raise UserError(f"no experiment {task!r} (looked for {path})")
  cfg = usercode.load_config(path)
  configs.apply_overrides(cfg, list(sets))
  return cfg


# A method: a search with these settings (``--set`` overrides of the task's experiment), and
# the method whose trained supernet it reads instead of training its own (it only
# discretizes differently: its cost includes that supernet's).
METHODS: dict[str, tuple[str, list[str], str | None]] = {
    "weights": ("the supernet's relaxed weights (DARTS: the task's supernet, argmax)",
                ["search.strategy=darts", "search.discretize=argmax"], None),
    "perturbation": ("DARTS-PT: the supernet's val loss with each candidate removed",
                     ["search.strategy=darts", "search.discretize=perturbation"], "weights"),
    "inherited": ("the supernet's own weights, each candidate's sub-network pinned and scored "
                  "on val (batch statistics recalibrated)",
                  ["search.strategy=darts", "search.discretize=pinned"], "weights"),
    "single_path": ("a single-path supernet (a random candidate per step and slot), each "
                    "candidate's sub-network scored on val (random activation)",
                    ["search.strategy=random_activation"], None),
    "screen": ("every candidate trained alone on the train split as long as the experiment "
               "says, then a shortlist", ["search.strategy=darts", "search.discretize=screen",
                                          "search.learning_curve=false"], "weights"),
    "learning_curve": ("the screen ranked by each network's learning curve extrapolated to "
                       "train + val", ["search.strategy=darts", "search.discretize=screen",
                                       "search.learning_curve=true"], "weights"),
    "race": ("the race: every candidate trained for 5 epochs, the 4 with the lowest loss on "
             "the train split for 10 more, the best on val chosen",
             ["search.strategy=race", "search.race.epochs=[5,10]", "search.race.keep=[4]",
              "search.race.cut=train_loss"], None),
    "race_val": ("the race cut by val score: every candidate trained for 5 epochs, the best 4 "
                 "on val for 10 more", ["search.strategy=race", "search.race.epochs=[5,10]",
                                        "search.race.keep=[4]", "search.race.cut=val"], None),
    "race_short": ("the race's first cycle alone: every candidate trained for 5 epochs",
                   ["search.strategy=race", "search.race.epochs=[5]", "search.race.keep=[]"],
                   None),
}


def run_method(cfg: ml_collections.ConfigDict, name: str, workdir: str,
               progress: bool = False) -> dict:
  """Runs method ``name``'s search of ``cfg``'s task in ``workdir/methods/NAME`` (resuming)
  and returns its record, with the search's wall time in ``strategy.cost.seconds`` (plus the
  supernet's it reads, where it reads another method's)."""
  import shutil

  from actsearch.commands import search

  if name not in METHODS:
    raise UserError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
  _, sets, reuse = METHODS[name]
  c = cfg.copy_and_resolve_references()
  configs.apply_overrides(c, sets)
  run_dir = os.path.join(workdir, "methods", name)
  before = 0.0
  if reuse is not None:
    source = run_method(cfg, reuse, workdir, progress)
    before = float(source["strategy"]["cost"]["seconds"])
    if not os.path.isdir(os.path.join(run_dir, "checkpoints")):
      shutil.copytree(os.path.join(workdir, "methods", reuse, "checkpoints"),
                      os.path.join(run_dir, "checkpoints"))
  timed = os.path.join(run_dir, "seconds.json")
  start = time.perf_counter()
  record = search.run(c, run_dir, progress=progress)
  jax.clear_caches()  # a long yardstick compiles hundreds of programs: free each method's
  if not os.path.exists(timed):  # the first (whole) run's time; a resumed one is not timed
    files.write_json_atomic(timed, {"seconds": before + time.perf_counter() - start})
  record.setdefault("strategy", {}).setdefault("cost", {})["seconds"] = \
      files.read_json(timed)["seconds"]
  return record


def run(task: str, workdir: str, methods: Sequence[str], sets: Sequence[str] = (),
        per_slot: bool = False, progress: bool = False) -> dict:
  """The truth of ``task``, each method scored against it; writes ``WORKDIR/yardstick.json``
  and ``yardstick.md``."""
  unknown = [m for m in methods if m not in METHODS]
  if unknown:
    raise UserError(f"unknown method {unknown[0]!r}; known: {', '.join(METHODS)}")
  cfg = load_task(task, sets)
  true = truth(cfg, workdir, progress, per_slot)
  per_seed = retrain_seed_examples(cfg)
  seed_seconds = relu_seed_seconds(cfg, workdir, progress) if methods else None
  rows = {}
  for name in methods:
    rows[name] = score_method(run_method(cfg, name, workdir, progress), true, per_seed,
                              seed_seconds)
  out = {"task": task, "sets": list(sets), "truth": true, "methods": rows,
         "retrain_seed_examples": per_seed, "truth_seed_seconds": seed_seconds}
  files.write_json_atomic(os.path.join(workdir, "yardstick.json"), out)
  with open(os.path.join(workdir, "yardstick.md"), "w", encoding="utf-8") as f:
    f.write(markdown(out))
  return out


def relu_seed_seconds(cfg: ml_collections.ConfigDict, workdir: str,
                      progress: bool = False) -> float:
  """The unit of a method's time: one seed of the relu network trained as the retrain trains
  it (train + val, the recipe, data loading and compilation included), timed once."""
  splits = data.load(cfg.data, SPLIT_SEED)
  start = time.perf_counter()
  result = train_scores(cfg, splits, {"*": "relu"}, os.path.join(workdir, "relu_seed"), [0],
                        progress)
  if "wall" not in result:
    result["wall"] = time.perf_counter() - start
    files.write_json_atomic(os.path.join(workdir, "relu_seed", "result.json"), result)
  return float(result["wall"])


def markdown(out: dict) -> str:
  """The yardstick's tables: the truth, then each method against it."""
  t = out["truth"]
  pct = 100.0 if all(0 <= v <= 1 for v in t["mean"].values()) else 1.0
  scored_on = "fresh examples" if t["folds"] == 1 else f"{t['folds']}-fold cross-validation"
  lines = [f"# Yardstick: {out['task']}" + (f" ({', '.join(out['sets'])})" if out["sets"]
                                              else ""), "",
           f"Truth: each candidate in every slot, the retrain recipe on train + val, scored on "
           f"{scored_on}, "
           f"seeds {t['seeds'][0]}-{t['seeds'][-1]} ({t['seconds']:.0f} s). Its own agreement "
           f"(Spearman, seeds 1000-1002 against 1003-1005): {t['agreement']:+.2f}. The "
           f"4000-example truth (train split, scored on val) against it: "
           f"{t['truth4000_spearman']:+.2f}.", "",
           "| candidate | truth | SE | 4000-example truth |", "| --- | --- | --- | --- |"]
  for c in sorted(t["candidates"], key=lambda c: -t["mean"][c]):
    lines.append(f"| {c} | {pct * t['mean'][c]:.2f} | {pct * t['standard_error'][c]:.2f} | "
                 f"{pct * t['truth4000'][c]:.2f} |")
  if t.get("per_slot"):
    lines += ["", f"Per slot, the other slots at {t['best']} (seeds 1000-1002):", "",
              "| candidate | " + " | ".join(t["per_slot"]) + " |",
              "| --- |" + " --- |" * len(t["per_slot"])]
    for c in t["candidates"]:
      lines.append(f"| {c} | " + " | ".join(f"{pct * row[c]:.2f}"
                                            for row in t["per_slot"].values()) + " |")
  if out["methods"]:
    lines += ["", "| method | Spearman | Kendall | truth's best in top 3 | top 3 | chosen | "
              "chosen within 1 SE of the best | cost (retrain seeds: examples, time) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in out["methods"].items():
      time_ratio = "" if m["seconds_in_seeds"] is None else f", {m['seconds_in_seeds']:.1f}"
      lines.append(f"| {name} | {m['spearman']:+.2f} | {m['kendall']:+.2f} | "
                   f"{'yes' if m['best_in_top3'] else 'no'} | {', '.join(m['top3'])} | "
                   f"{' / '.join(m['chosen'].values())} | "
                   f"{ {True: 'yes', False: 'no', None: '-'}[m.get('within_se')]} | "
                   f"{m['examples_in_seeds']:.1f}"
                   f"{time_ratio} |")
  return "\n".join(lines) + "\n"
