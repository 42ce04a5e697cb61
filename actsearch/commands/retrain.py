"""``actsearch retrain``: the found architecture and the baselines, trained from scratch over
seeds, compared on the test split with paired statistics.

The record ``architecture.json`` names everything: the backbone (``model``), the data
(``data``) and the experiment's retrain recipe (``retrain``); ``--set`` overrides any of them.
Each variant, the found architecture (``found``) and each baseline (the same backbone with one
candidate in every slot), trains on the search's train + val data with the same recipe and the
same seeds: seed ``s`` gives every variant the same initial weights (where shapes agree) and the
same batch order, so differences between variants are paired per seed.

The seeds of a variant train together (``jax.vmap`` over a leading seed axis, under the shared
``pmap`` loop), each exactly as it would alone. The retrain directory holds ``config.json``,
one folder per variant (orbax checkpoints, TensorBoard events per seed, each seed's trained
weights in ``weights/seed<s>`` (``train/weights.py``), ``result.json`` once finished: a variant
that finished is not trained again), and at the end ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx

from actsearch import architecture, checks, configs, data, models
from actsearch.commands import workdirs
from actsearch.errors import UserError
from actsearch.models import network, user
from actsearch.results import FOUND, SCHEMA, read_result, summarize
from actsearch.space import activations
from actsearch.train import files, trainer, weights
from actsearch.train.lock import WorkdirLock
from actsearch.train.objective import Objective
from actsearch.version import __version__

SPLIT_SEED = 0


def config_from_architecture(arch: dict, sets: Sequence[str] = (),
                             where: str = "architecture") -> ml_collections.ConfigDict:
  """The retrain config of a record: defaults, then the record's model, data and recipe, then
  ``--set`` overrides."""
  cfg = configs.base_config()
  base_data = configs.to_json(cfg.data)
  stored = {"model": arch["model"], "seed": arch.get("seed", 0),
            "data": {k: v for k, v in arch["data"].items() if k in base_data},
            "retrain": arch.get("retrain", {})}
  cfg = configs.from_json(stored)
  configs.apply_overrides(cfg, sets)
  # the record's user code named before any of its candidates is looked up
  architecture.require(arch, where, architecture.needed(arch) + list(cfg.retrain.baselines))
  checks.check_retrain(cfg.retrain)
  return cfg


def variants(arch: dict, baselines: Sequence[str], init_params: str = "initial",
             where: str = "architecture") -> dict[str, models.SlotFactory]:
  """``{"found": slots of the record, baseline: that candidate in every slot}``; every name
  must be a registered candidate (a record's user code named if not). ``init_params``:
  the found network's activation parameters start from the candidates' initial values
  (``initial``, as the baselines') or from the record's learned ones (``searched``)."""
  architecture.require(arch, where, architecture.needed(arch) + list(baselines or []))
  if baselines:
    activations.resolve(list(baselines))
  granularity = arch.get("param_granularity") or "layer"
  out = {FOUND: models.record_slots(arch, learned=init_params == "searched")}
  for name in baselines:
    if name == FOUND:
      raise UserError(f"--baselines: {FOUND!r} names the searched architecture, not a baseline")
    out[name] = models.uniform_slots(name, granularity)
  return out


def describe(arch: dict) -> str:
  """``sin / gelu / gelu``: the choices of the record, slot by slot."""
  return " / ".join(layer["choice"] if "channel_choices" not in layer
                    else f"{layer['choice']} (per channel)" for layer in arch["layers"])


def _fit_split(splits: data.Splits) -> tuple[np.ndarray, np.ndarray]:
  return (np.concatenate([splits.x_train, splits.x_val]),
          np.concatenate([splits.y_train, splits.y_val]))


def train_variant(cfg: ml_collections.ConfigDict, splits: data.Splits, slot: models.SlotFactory,
                  workdir: str, name: str, seeds: Sequence[int], *, progress: bool = True) -> dict:
  """Trains one variant over ``seeds`` (together, with the shared trainer) on train + val in
  ``workdir/name`` and scores it on the test split; resumes from there."""
  r = cfg.retrain
  x_fit, y_fit = _fit_split(splits)
  built = [models.build(cfg.model, splits.input_shape, splits.num_outputs, slot,
                        network.rngs(s)) for s in seeds]
  graphdef, state = trainer.stack_models(built)
  objective = Objective.of(graphdef, splits)
  state, seconds = trainer.fit(r, objective, state, x_fit, y_fit, workdir, seeds,
                               [f"seed{s}" for s in seeds], key=name, progress=progress,
                               desc="retrain", test=(splits.x_test, splits.y_test),
                               resident_mb=cfg.data.resident_mb)
  if jax.process_index() == 0:
    save_weights(os.path.join(workdir, name), graphdef, state, seeds)
  test = trainer.score(objective, state, splits.x_test, splits.y_test, r.eval_batch_size, "test")
  train = trainer.score(objective, state, x_fit, y_fit, r.eval_batch_size, "train")
  params = models.param_count(built[0])
  per_seed = []
  for i, s in enumerate(seeds):
    row = {"seed": int(s), "test_loss": float(test["test/loss"][i]),
           "train_loss": float(train["train/loss"][i]),
           "wall_time_s": seconds / len(seeds), "param_count": params}
    if "test/accuracy" in test:
      row["test_accuracy"] = float(test["test/accuracy"][i])
    per_seed.append(row)
  return {"seeds": per_seed, "wall_time_s": seconds, "steps": int(state.step[0])}


def weights_path(variant_dir: str, seed: int) -> str:
  return os.path.join(variant_dir, "weights", f"seed{seed}")


def unwrapped(model: nnx.Module) -> nnx.Module:
  """A user's own module out of the engine's wrapper (``models/user.py``); a built-in as is."""
  return model.model if isinstance(model, user.Backbone) else model


def copy_weights(workdir: str, report: dict, out: str) -> list[str]:
  """Copies every variant's trained seeds to ``out/VARIANT/seed<s>`` (``--weights-out``), each
  an orbax checkpoint of the network's NNX state; returns the directories written."""
  written = []
  for name in report["variants"]:
    for s in report["protocol"]["seeds"]:
      src = weights_path(os.path.join(workdir, name), s)
      if not os.path.isdir(src):
        raise UserError(f"{src} is missing (a variant trained before retrains kept their "
                        f"weights?): delete {os.path.join(workdir, name)} to train it again")
      dst = os.path.join(out, name, f"seed{s}")
      files.copy_tree(src, dst)
      written.append(dst)
  return written


def save_weights(variant_dir: str, graphdef, state, seeds: Sequence[int]) -> None:
  """Each seed's trained network (the user's own module for a user's model) as an orbax
  checkpoint of its NNX state, ``variant_dir/weights/seed<s>`` (``train/weights.py``)."""
  for i, s in enumerate(seeds):
    model = nnx.merge(graphdef, *(weights.member(part, i)
                                  for part in (state.params, state.arch, state.rest)))
    weights.save(weights_path(variant_dir, s), unwrapped(model))


def _git_commit() -> str | None:
  try:
    out = subprocess.run(["git", "-C", configs.ROOT, "rev-parse", "HEAD"], capture_output=True,
                         text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() or None if out.returncode == 0 else None


def provenance() -> dict:
  import jaxlib
  devices = jax.devices()
  return {"actsearch": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "git_commit": _git_commit(), "python": platform.python_version(),
          "device_kind": devices[0].device_kind, "device_count": len(devices),
          "process_count": jax.process_count(),
          "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def metric_of(task: str) -> tuple[str, bool]:
  """The metric that compares variants, and whether higher is better."""
  return ("test_accuracy", True) if task == data.CLASSIFICATION else ("test_loss", False)


def run(arch_path: str, workdir: str | None = None, *, seeds: int | None = None,
        epochs: int | None = None, baselines: Sequence[str] | None = None,
        sets: Sequence[str] = (), progress: bool = True, weights_out: str | None = None) -> dict:
  """Retrains the record at ``arch_path`` and the baselines; writes and returns results.
  ``weights_out``: also copies every variant's trained seeds there (``copy_weights``)."""
  arch = architecture.load(arch_path)
  cfg = config_from_architecture(arch, sets, arch_path)
  if seeds is not None:
    cfg.retrain.seeds = seeds
  if epochs is not None:
    cfg.retrain.epochs = epochs
  if baselines is not None:
    cfg.retrain.baselines = list(baselines)
  checks.check_retrain(cfg.retrain)
  workdir = workdir or os.path.join(os.path.dirname(os.path.abspath(arch_path)), "retrain")
  workdirs.recorded_defaults(workdir, cfg)  # a retrain begun before a key existed
  slots = variants(arch, list(cfg.retrain.baselines), cfg.retrain.init_params,
                   arch_path)  # unknown names refused before the data
  # Train + val is the same set whatever seed split it; split with a fixed one, so that the
  # same architecture retrains alike whichever search seed found it.
  splits = data.load(cfg.data, SPLIT_SEED)
  primary = jax.process_index() == 0
  resolved = configs.from_json(configs.to_json(cfg))
  resolved.architecture = {layer["name"]: layer.get("channel_choices") or layer["choice"]
                           for layer in arch["layers"]}
  with WorkdirLock(workdir, enabled=primary):  # one run per workdir
    report = _retrain(arch, arch_path, cfg, splits, slots, resolved, workdir, primary,
                      progress)
    if weights_out and primary:
      written = copy_weights(workdir, report, weights_out)
      print(f"wrote the trained weights of {len(written)} networks to {weights_out} "
            "(VARIANT/seed<s>: orbax checkpoints of each network's NNX state)")
  return report


def _retrain(arch, arch_path, cfg, splits, slots, resolved, workdir, primary, progress) -> dict:
  workdirs.prepare(workdir, resolved, primary)
  seed_list = list(range(cfg.retrain.seeds))
  results = {}
  for name, slot in slots.items():
    done = os.path.join(workdir, name, "result.json")
    if os.path.exists(done):
      results[name] = read_result(done)
      print(f"{name}: finished earlier, kept ({done})")
      continue
    results[name] = train_variant(cfg, splits, slot, workdir, name, seed_list,
                                  progress=progress)
    results[name]["description"] = describe(arch) if name == FOUND else f"{name} everywhere"
    if primary:
      files.write_json_atomic(done, results[name])
  metric, higher = metric_of(splits.task)
  report = {"schema": SCHEMA, "architecture": os.path.abspath(arch_path),
            "found": describe(arch), "layers": resolved.architecture.to_dict(),
            "variants": results, **summarize(results, metric, higher),
            "protocol": {"train_examples": len(splits.x_train) + len(splits.x_val),
                         "test_examples": len(splits.x_test), "seeds": seed_list},
            "config": configs.to_json(cfg), "provenance": provenance()}
  if primary:
    files.write_json_atomic(os.path.join(workdir, "results.json"), report)
    files.write_text_atomic(os.path.join(workdir, "results.md"), markdown(report))
  return report


def _pct(x: float, scale: float) -> str:
  return "nan" if not np.isfinite(x) else f"{x * scale:.2f}"


def markdown(report: dict) -> str:
  """``results.md``: per-variant mean, std and 95% interval; paired differences; the verdict."""
  metric, higher = report["metric"], report["higher_is_better"]
  scale = 100.0 if metric == "test_accuracy" else 1.0
  unit = " (%)" if scale == 100.0 else ""
  proto, r = report["protocol"], report["config"]["retrain"]
  lines = [f"# Retrain: {report['found']}", "",
           f"Architecture: `{report['architecture']}`  ",
           f"Protocol: trained from scratch on train + val ({proto['train_examples']} examples), "
           f"scored on the test split ({proto['test_examples']} examples); seeds "
           f"{', '.join(map(str, proto['seeds']))}, paired across variants; {r['optimizer']} lr "
           f"{r['lr']} ({r['schedule']}), batch {r['batch_size']}, {r['epochs']} epochs.", "",
           f"| variant | {metric}{unit} mean | std | 95% CI | train loss | params | seconds |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for name, res in report["variants"].items():
    s = report["summary"][name]
    train_loss = np.mean([row["train_loss"] for row in res["seeds"]])
    label = f"{name} ({res['description']})" if name == FOUND else name
    lines.append(f"| {label} | {_pct(s['mean'], scale)} | {_pct(s['std'], scale)} | "
                 f"[{_pct(s['ci_low'], scale)}, {_pct(s['ci_high'], scale)}] | "
                 f"{train_loss:.4f} | {res['seeds'][0]['param_count']} | "
                 f"{res['wall_time_s']:.1f} |")
  if report["paired"]:
    lines += ["", f"Paired difference, found minus baseline ({metric}{unit}; per seed):", "",
              "| baseline | mean difference | 95% CI | p |", "| --- | --- | --- | --- |"]
    for name, p in report["paired"].items():
      lines.append(f"| {name} | {_pct(p['mean_diff'], scale)} | [{_pct(p['ci_low'], scale)}, "
                   f"{_pct(p['ci_high'], scale)}] | {p['p_value']:.3g} |")
    best = report["best_baseline"]
    better = "higher" if higher else "lower"
    lines += ["", f"Verdict: the found architecture **{report['verdict']}** against the best "
              f"baseline, {best} (paired 95% interval of the difference; {better} {metric} is "
              "better)."]
  return "\n".join(lines) + "\n"
