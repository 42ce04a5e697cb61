"""The one epoch loop of every command: resume, steps, the NaN check, logs, checkpoints.

A command (search, retrain) hands the loop a ``Task``: a pmapped step function, the batches
of each epoch, an evaluator, and what to log. The loop resumes from the newest checkpoint in
``run_dir/checkpoints`` (the data order of an epoch is a function of the seed and the epoch,
so the epoch number is all a resumed run needs), runs the epochs up to ``task.stop_epoch``,
reads step metrics back once per epoch (one device sync), stops with a
``FloatingPointError`` naming the step on a non-finite loss (before that epoch's checkpoint,
so the last good one stays), logs scalars, evaluates, and saves one checkpoint per epoch.

Test hook: with ``ACTSEARCH_PAUSE_AT_STEP=N:FILE`` in the environment, the loop stops once this
process has completed N steps (counted over every loop it runs: a retrain's variants follow
each other), writes FILE and waits until it is killed, so that a test kills the process at a
moment it controls instead of after a guessed delay. ``N:FILE:save`` stops instead at the end
of the epoch that holds step N, after its logs are written and before its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import ml_collections
import numpy as np

from actsearch import architecture, configs, health, parallel
from actsearch.checkpoint import Checkpointer
from actsearch.errors import UserError

PAUSE_ENV = "ACTSEARCH_PAUSE_AT_STEP"
_steps_in_process = [0]  # steps taken by every loop of this process (the test hook's clock)


@dataclasses.dataclass
class Task:
  """What a command asks of the loop."""
  step: Callable                              # pmapped (state, *batches) -> (state, metrics)
  batches: Callable[[int], Iterable[tuple]]   # epoch -> the step arguments after the state
  steps_per_epoch: int
  stop_epoch: int
  evaluate: Callable[[Any], dict[str, float]] | None = None  # replicated state -> scalars
  epoch_scalars: Callable[[Any], dict[str, float]] | None = None  # host state -> scalars
  check: Callable[[Any], None] | None = None  # per epoch, on the replicated state
  after_epoch: Callable[[int, Any], Any] | None = None  # (epoch done, host state) -> state
  hint: str = ""                              # advice after a non-finite loss
  on_nonfinite: str = "stop"                  # stop | skip (health.guard drops the update)
  max_skipped: int = 10                       # skip: stop after this many in a row
  desc: str = "epochs"                        # progress bar label


def prepare_workdir(workdir: str, cfg: ml_collections.ConfigDict, primary: bool) -> None:
  """Writes ``config.json``, or refuses a workdir that holds a run with another config."""
  path = os.path.join(workdir, "config.json")
  resolved = configs.to_json(cfg)
  if os.path.exists(path):
    try:
      with open(path, encoding="utf-8") as f:
        stored = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise UserError(f"{path} is unreadable ({e}); use a new --workdir") from None
    if stored != resolved:
      diff = sorted(configs.diff_keys(stored, resolved))
      raise UserError(f"{workdir} holds a run with a different config ({', '.join(diff)}); "
                      "use a new --workdir or the same settings to resume")
  elif primary:
    os.makedirs(workdir, exist_ok=True)
    architecture.write_json_atomic(path, resolved)


def _pause_step() -> tuple[int, str, str] | None:
  spec = os.environ.get(PAUSE_ENV)
  if not spec:
    return None
  step, path, *where = spec.split(":")
  return int(step), path, (where[0] if where else "step")


def _pause(path: str) -> None:
  with open(path, "w", encoding="utf-8") as f:
    f.write("paused\n")
  while True:  # until the test kills the process
    time.sleep(1)


def _finite(metrics: dict) -> bool:
  return all(np.isfinite(np.asarray(v)).all() for k, v in metrics.items()
             if k.endswith("/loss"))


def _skipped(metrics: dict) -> np.ndarray:
  """Per member (seed) of the step: 1 where ``health.guard`` dropped the update."""
  return np.asarray(metrics.get(health.SKIPPED, 0.0)).reshape(-1)


def _fmt(v) -> str:
  return f"{float(np.mean(v)):.3f}"


def run(task: Task, state: Any, run_dir: str, logger, *, progress: bool = True
        ) -> tuple[Any, dict]:
  """Runs ``task`` from the newest checkpoint of ``run_dir`` (or ``state``) to its stop epoch;
  returns the final state (on the host) and the last checkpoint's record. The caller owns
  ``logger`` (and closes it)."""
  primary = jax.process_index() == 0
  ckpt_dir = os.path.join(run_dir, "checkpoints")
  # Only process 0 writes; the others read the newest checkpoint to resume from it.
  ckpt = (Checkpointer(ckpt_dir, read_only=not primary)
          if primary or os.path.isdir(ckpt_dir) else None)
  record: dict = {"epoch": 0, "metrics": {}}
  pause = _pause_step()
  bar = None
  in_a_row = None
  try:
    if ckpt is not None and ckpt.latest_epoch() is not None:
      restored = ckpt.restore_newest_good(state)
      if restored is None:
        raise UserError(f"no checkpoint in {ckpt_dir} can be read; move it away to start over")
      state, record = restored
    start = int(record["epoch"])
    logger.resume_at(start * task.steps_per_epoch)  # no step twice in the logs
    state_r = parallel.replicate(state)
    bar = _progress(progress and primary, task.desc, start, task.stop_epoch,
                    task.steps_per_epoch)
    for epoch in range(start, task.stop_epoch):
      first_step = epoch * task.steps_per_epoch
      step_metrics = []
      for args in task.batches(epoch):
        state_r, m = task.step(state_r, *args)
        step_metrics.append(m)
        if bar is not None:
          bar.update(1)
        _steps_in_process[0] += 1
        if pause is not None and pause[2] == "step" and _steps_in_process[0] == pause[0]:
          jax.block_until_ready(state_r)
          _pause(pause[1])
      step_metrics = [parallel.unreplicate(m) for m in step_metrics]  # one sync per epoch
      skipped_total = np.asarray(record.get("skipped_steps", 0.0), np.float64)
      for i, m in enumerate(step_metrics):
        skipped = _skipped(m)
        if task.on_nonfinite == "skip":
          in_a_row = skipped if in_a_row is None else (in_a_row + 1) * skipped
          skipped_total = skipped_total + skipped
          if in_a_row.max() >= task.max_skipped:
            raise FloatingPointError(
                f"{int(in_a_row.max())} non-finite steps in a row up to step {first_step + i} "
                f"(epoch {epoch + 1}); the last checkpoint is epoch {epoch}"
                f"{': ' + task.hint if task.hint else ''}")
        elif not _finite(m) or skipped.any():
          raise FloatingPointError(
              f"non-finite loss at step {first_step + i} (epoch {epoch + 1}); the last "
              f"checkpoint is epoch {epoch}{': ' + task.hint if task.hint else ''}")
        logger.scalars(first_step + i + 1, m)
      if task.check is not None:
        task.check(state_r)
      scalars = task.evaluate(state_r) if task.evaluate is not None else {}
      state = parallel.unreplicate(state_r)
      if task.after_epoch is not None:  # before the checkpoint: a resumed run sees it too
        changed = task.after_epoch(epoch + 1, state)
        if changed is not state:
          state, state_r = changed, parallel.replicate(changed)
      if task.epoch_scalars is not None:
        scalars = {**scalars, **task.epoch_scalars(state)}
      end_step = (epoch + 1) * task.steps_per_epoch
      if task.on_nonfinite == "skip":
        scalars["health/skipped_steps"] = (skipped_total if skipped_total.size > 1
                                           else float(skipped_total.sum()))
      if scalars:
        logger.scalars(end_step, scalars)
      logger.flush()
      record = {"epoch": epoch + 1,
                "metrics": {k.replace("/", "_"): float(np.mean(v)) for k, v in scalars.items()
                            if "/" in k and k.split("/")[0] in ("val", "test")}}
      if task.on_nonfinite == "skip":
        record["skipped_steps"] = np.asarray(skipped_total).tolist()
      if pause is not None and pause[2] == "save" and first_step < pause[0] <= end_step:
        _pause(pause[1])
      if primary:
        ckpt.save(epoch + 1, state, record)
      if bar is not None:
        last = step_metrics[-1]
        bar.set_postfix({"epoch": epoch + 1, "loss": _fmt(last["train/loss"]),
                         **({"acc": _fmt(last["train/accuracy"])}
                            if "train/accuracy" in last else {}),
                         **{k: _fmt(v) for k, v in record["metrics"].items()}})
    parallel.assert_replicated(state_r, "state")
    return parallel.unreplicate(state_r), record
  finally:
    if bar is not None:
      bar.close()
    logger.flush()
    if ckpt is not None:
      ckpt.close()


def _progress(enabled: bool, desc: str, start: int, stop: int, steps: int):
  if not enabled or start >= stop:
    return None
  from tqdm.auto import tqdm
  return tqdm(total=(stop - start) * steps, desc=f"{desc} {start + 1}-{stop}",
              unit="step", dynamic_ncols=True)
