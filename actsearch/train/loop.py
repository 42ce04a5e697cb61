"""The one loop of every command: resume, steps, the non-finite check, logs, checkpoints.

A command (search, retrain) hands the loop a ``Task``: a pmapped step function, the batches
of each epoch, an evaluator, and what to log. The loop resumes from the newest good checkpoint
in ``run_dir/checkpoints`` at its global step (the data order of an epoch is a function of the
seed and the epoch, so a resumed run skips the steps of the epoch it has taken), and runs to
``task.stop_epoch`` in stretches: a stretch ends at the end of an epoch or, with
``checkpoint_every``, after that many steps. Per stretch the loop reads the step metrics back
once (one device sync), stops with a ``FloatingPointError`` naming the step on a non-finite
loss (before the stretch's checkpoint, so the last good one stays), logs, and saves a
checkpoint, both written while the next stretch runs (``run``). At the end of an epoch it also
checks the replicas, evaluates (every ``eval_every`` epochs and after the last; the evaluator
is compiled before the first step) and runs ``after_epoch``.

Test hooks (``hooks.py``): ``ACTSEARCH_PAUSE_AT_STEP`` pauses the process after a step, before
a save or inside one, so that a test kills it at a moment it names.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from actsearch.errors import UserError
from actsearch.train import health, hooks, parallel
from actsearch.train.checkpoint import Checkpointer
from actsearch.train.evaluate import Evaluator


@dataclasses.dataclass
class Task:
  """What a command asks of the loop."""
  step: Callable                              # pmapped (state, *batches) -> (state, metrics)
  # (epoch, first, stop) -> the step arguments after the state, for steps [first, stop) of
  # the epoch
  batches: Callable[[int, int, int], Iterable[tuple]]
  steps_per_epoch: int
  stop_epoch: int                             # where this invocation stops
  epochs: int | None = None                   # the run's whole length (default: stop_epoch)
  evaluate: Evaluator | None = None           # replicated state -> scalars
  eval_every: int = 1                         # epochs between evaluations (and the last)
  checkpoint_every: int = 0                   # steps between checkpoints (0: epochs only)
  async_checkpoints: bool | None = False      # orbax writes in a background thread (None:
                                              # on accelerators, ``background_saves``)
  epoch_scalars: Callable[[Any], dict[str, float]] | None = None  # host state -> scalars
  check: Callable[[Any], None] | None = None  # per epoch, on the replicated state
  after_epoch: Callable[[int, Any], Any] | None = None  # (epoch done, host state) -> state
  hint: str = ""                              # advice after a non-finite loss
  on_nonfinite: str = "stop"                  # stop | skip (health.guard drops the update)
  max_skipped: int = 10                       # skip: stop after this many in a row
  desc: str = "epochs"                        # progress bar label
  metric_keys: list[str] | None = None        # the step's metrics come packed (``packed``)


def background_saves(setting: bool | None) -> bool:
  """Whether checkpoints are written in a background thread; unset (None): where the step
  runs on an accelerator. On a CPU the steps take the cores a background save would run on:
  the default search on the 2-core VM ran at 3.50 ms per step with background saves and 3.33
  ms with saves in the main thread (four alternating runs each), the retrain at 6.94 and 7.00
  ms (docs/performance.md, "The loop")."""
  if setting is not None:
    return bool(setting)
  return jax.default_backend() != "cpu"


def _finite(metrics: dict) -> bool:
  return all(np.isfinite(np.asarray(v)).all() for k, v in metrics.items()
             if k.endswith("/loss"))


def _what(metrics: dict) -> str:
  """What a bad step had: a non-finite loss, or (its losses finite) a non-finite update of the
  state, such as a batch statistic that overflowed (``health.guard`` dropped or flagged it)."""
  return "non-finite loss at" if not _finite(metrics) else (
      "non-finite state (weights, alpha or batch statistics) at")


def _first_bad(rows: list[np.ndarray], keys: list[str]) -> int | None:
  """The first of a stretch's packed metric rows (``packed``) with a non-finite loss or an
  update ``health.guard`` dropped, or None: ``_finite`` and ``_skipped`` of every step in a
  few array operations."""
  stacked = np.stack(rows).reshape(len(rows), -1, len(keys))
  losses = [j for j, k in enumerate(keys) if k.endswith("/loss")]
  bad = ~np.isfinite(stacked[..., losses]).all(axis=(1, 2))
  if health.SKIPPED in keys:
    bad |= (stacked[..., keys.index(health.SKIPPED)] != 0).any(axis=1)
  return int(np.argmax(bad)) if bad.any() else None


def _stopped(what: str, step: int, epoch: int, record: dict, spe: int,
             hint: str) -> FloatingPointError:
  """The error that stops a run at ``step``: ``what`` happened, where to resume from."""
  return FloatingPointError(
      f"{what} step {step} (epoch {epoch + 1}); the last checkpoint is "
      f"{_last(record, spe)}{': ' + hint if hint else ''}")


def _skipped(metrics: dict) -> np.ndarray:
  """Per member (seed) of the step: 1 where ``health.guard`` dropped the update."""
  return np.asarray(metrics.get(health.SKIPPED, 0.0)).reshape(-1)


def _fmt(v) -> str:
  return f"{float(np.mean(v)):.3f}"


def packed(step_fn: Callable) -> Callable:
  """``step_fn`` with its metrics packed into one array ``[..., K]`` (keys sorted, in
  ``.keys`` once traced): a step then hands the host one small array instead of one per
  metric, which a fast step would otherwise spend much of its time creating and copying."""
  keys: list[str] = []

  def fn(state, *args):
    state, metrics = step_fn(state, *args)
    keys[:] = sorted(metrics)
    return state, jnp.stack([jnp.asarray(metrics[k], jnp.float32) for k in keys], axis=-1)
  fn.keys = keys
  return fn


def stretches(start: int, stop: int, steps_per_epoch: int, every: int) -> list[tuple[int, int]]:
  """The stretches ``[a, b)`` of global steps from ``start`` to ``stop``: each ends at an
  epoch's end or at a multiple of ``every`` (if positive), whichever comes first."""
  out = []
  while start < stop:
    end = min(stop, (start // steps_per_epoch + 1) * steps_per_epoch)
    if every > 0:
      end = min(end, (start // every + 1) * every)
    out.append((start, end))
    start = end
  return out


def _position(record: dict, steps_per_epoch: int) -> int:
  """The global step a checkpoint's record stands at (records before step keys: epochs)."""
  return int(record.get("step", int(record["epoch"]) * steps_per_epoch))


@dataclasses.dataclass
class _Finished:
  """A stretch whose steps have run and passed their checks: what is left to write."""
  first: int                      # its global steps are (first, end]
  end: int
  rows: list[dict]                # the step metrics, one dict per step
  scalars: dict                   # logged at ``end`` (evaluation, epoch scalars)
  host: Any                       # the state on the host (None where this process saves none)
  record: dict                    # the checkpoint's record
  save_hook: bool = False         # test hooks, decided when the stretch ended
  insave_hook: bool = False


class _Skips:
  """The skip policy's counters, per member (seed): updates dropped in a row and in all."""

  def __init__(self, record: dict):
    self.in_a_row = np.asarray(record["in_a_row"], np.float64) if "in_a_row" in record else None
    self.total = np.asarray(record.get("skipped_steps", 0.0), np.float64)

  def add(self, skipped: np.ndarray) -> float:
    """Counts one step; returns the longest run of drops in a row."""
    self.in_a_row = skipped if self.in_a_row is None else (self.in_a_row + 1) * skipped
    self.total = self.total + skipped
    return float(self.in_a_row.max())

  def record(self) -> dict:
    return {"skipped_steps": self.total.tolist(), "in_a_row": np.asarray(self.in_a_row).tolist()}

  def scalar(self):
    return self.total if self.total.size > 1 else float(self.total.sum())


def _checked(task: Task, rows: list, first: int, record: dict,
             skips: _Skips) -> tuple[list[dict], FloatingPointError | None]:
  """A stretch's step metrics (packed rows or dicts) as dicts, checked: every step's and None,
  or the steps before the first bad one and the error that stops the run there. Policy stop:
  a non-finite loss or a dropped update is bad (packed rows: the whole stretch in a few array
  operations); skip: the counters go on and too many drops in a row is bad."""
  spe, epoch = task.steps_per_epoch, first // task.steps_per_epoch
  if task.metric_keys is not None:
    packed, rows = rows, [{k: v[..., j] for j, k in enumerate(task.metric_keys)} for v in rows]
    if task.on_nonfinite != "skip":
      bad = _first_bad(packed, task.metric_keys)
      return (rows, None) if bad is None else (
          rows[:bad], _stopped(_what(rows[bad]), first + bad, epoch, record, spe, task.hint))
  for i, m in enumerate(rows):
    skipped = _skipped(m)
    if task.on_nonfinite == "skip":
      in_a_row = skips.add(skipped)
      if in_a_row >= task.max_skipped:
        return rows[:i], _stopped(f"{int(in_a_row)} non-finite steps in a row up to",
                                  first + i, epoch, record, spe, task.hint)
    elif not _finite(m) or skipped.any():
      return rows[:i], _stopped(_what(m), first + i, epoch, record, spe, task.hint)
  return rows, None


def run(task: Task, state: Any, run_dir: str, logger, *, progress: bool = True,
        timeline: list | None = None) -> tuple[Any, dict]:
  """Runs ``task`` from the newest good checkpoint of ``run_dir`` (or ``state``) to its stop
  epoch; returns the final state (on the host) and the last checkpoint's record. The caller
  owns ``logger`` (and closes it).

  Pipelined by one stretch: a stretch's steps are dispatched, then the logs and checkpoint of
  the stretch before are written while they run. The steps run on the device's own thread
  (on a CPU this small step takes one core), so writing there costs the run little; what
  reads a stretch's device state (its checks, evaluation, ``after_epoch``, ``epoch_scalars``,
  the copy to the host) still happens between the stretches. A stretch's checkpoint is thus
  written a little after its steps; a kill in between loses what it would lose a moment
  before that checkpoint, and an error or interrupt on the way out still writes it.

  ``timeline``: ``(global step, time.perf_counter())`` is appended when a stretch's device
  work is done (steps, checks, evaluation), and once more when the last checkpoint is written
  (the bench's whole-run rate)."""
  primary = jax.process_index() == 0
  ckpt_dir = os.path.join(run_dir, "checkpoints")
  # Only process 0 writes; the others read the newest checkpoint to resume from it.
  ckpt = (Checkpointer(ckpt_dir, read_only=not primary,
                       asynchronous=background_saves(task.async_checkpoints) and primary)
          if primary or os.path.isdir(ckpt_dir) else None)
  spe = task.steps_per_epoch
  epochs = task.epochs or task.stop_epoch
  record: dict = {"epoch": 0, "step": 0, "metrics": {}}
  bar = None
  closed = False
  pending: list[_Finished] = []  # the stretch before, its logs and checkpoint not yet written

  def write(done: _Finished) -> None:
    _log_steps(logger, done.first, done.rows)
    if done.scalars:
      logger.scalars(done.end, done.scalars)
    logger.flush()  # the logs of a checkpoint's steps are on disk before it
    if done.save_hook:
      if primary:
        ckpt.wait()
      hooks.pause_here()
    if primary:
      ckpt.save(done.end, done.host, done.record, pause_inside=done.insave_hook)
    if bar is not None:
      last = done.rows[-1]
      bar.set_postfix({"epoch": (done.end - 1) // spe + 1, "loss": _fmt(last["train/loss"]),
                       **({"acc": _fmt(last["train/accuracy"])}
                          if "train/accuracy" in last else {}),
                       **{k: _fmt(v) for k, v in done.record["metrics"].items()}})

  def write_pending() -> None:
    while pending:
      write(pending.pop())

  def before_pause() -> None:  # a test hook pauses: the stretches before are written
    write_pending()
    if primary:
      ckpt.wait()

  try:
    if ckpt is not None and ckpt.latest() is not None:
      restored = ckpt.restore_newest_good(state)
      if restored is None:
        raise UserError(f"no checkpoint in {ckpt_dir} can be read; move it away to start over")
      state, record = restored
    start = _position(record, spe)
    logger.resume_at(start)  # no step twice in the logs
    skips = _Skips(record)
    state_r = parallel.replicate(state)
    if task.evaluate is not None and any(  # compiled before the first step (``Evaluator``)
        e % task.eval_every == 0 or e == epochs for e in range(start // spe + 1,
                                                                task.stop_epoch + 1)):
      task.evaluate.compile(state_r)
    bar = _progress(progress and primary, task.desc, start, task.stop_epoch * spe, spe)
    for first, end in stretches(start, task.stop_epoch * spe, spe, task.checkpoint_every):
      epoch, offset = divmod(first, spe)
      step_metrics = []
      for args in task.batches(epoch, offset, end - epoch * spe):
        state_r, m = task.step(state_r, *args)
        step_metrics.append(m)
        if bar is not None:
          bar.update(1)
        hooks.step_taken(state_r, before_pause=before_pause)
      write_pending()  # while this stretch's steps run
      step_metrics = parallel.unreplicate_all(step_metrics)  # one sync per stretch
      rows, error = _checked(task, step_metrics, first, record, skips)
      if error is not None:  # the steps before the bad one are logged
        _log_steps(logger, first, rows)
        raise error
      scalars: dict = {}
      metrics = dict(record.get("metrics", {}))
      host = None  # the state on the host, fetched once for what needs it
      if end % spe == 0:  # the end of an epoch
        done = end // spe
        if task.check is not None:
          task.check(state_r)
        if task.evaluate is not None and (done % task.eval_every == 0 or done == epochs):
          scalars = task.evaluate(state_r)
          metrics = {k.replace("/", "_"): float(np.mean(v)) for k, v in scalars.items()
                     if "/" in k and k.split("/")[0] in ("val", "test")}
        if task.after_epoch is not None:  # before the checkpoint: a resumed run sees it too
          host = parallel.unreplicate(state_r)
          changed = task.after_epoch(done, host)
          if changed is not host:
            state_r, host = parallel.replicate(changed), None
        if task.epoch_scalars is not None:
          host = parallel.unreplicate(state_r) if host is None else host
          scalars = {**scalars, **task.epoch_scalars(host)}
        if task.on_nonfinite == "skip":
          scalars["health/skipped_steps"] = skips.scalar()
      record = {"step": end, "epoch": end // spe, "metrics": metrics,
                **(skips.record() if task.on_nonfinite == "skip" else {})}
      if primary and host is None:  # copied now: the next step takes the device buffers
        host = parallel.unreplicate(state_r)
      pending.append(_Finished(first, end, rows, scalars, host, record,
                               hooks.armed("save"), hooks.armed("insave")))
      if timeline is not None:
        timeline.append((end, time.perf_counter()))
    write_pending()
    if timeline:
      timeline.append((timeline[-1][0], time.perf_counter()))
    parallel.assert_replicated(state_r, "state")
    if ckpt is not None:
      closed = True
      ckpt.close()  # waits for a background save; raises if it failed
    return parallel.unreplicate(state_r), record
  finally:
    try:
      write_pending()  # an error or interrupt while the next stretch ran: its checkpoint
    except Exception:  # noqa: BLE001 - the error already on its way says more
      pass
    if bar is not None:
      bar.close()
    logger.flush()
    if ckpt is not None and not closed:
      try:
        ckpt.close()
      except Exception:  # noqa: BLE001 - the error already on its way says more
        pass


def _log_steps(logger, first: int, rows: list[dict]) -> None:
  """The step metrics of the steps after ``first``, one record per step."""
  for i, m in enumerate(rows):
    logger.scalars(first + i + 1, m)


def _last(record: dict, spe: int) -> str:
  """The last checkpoint, as the non-finite messages name it."""
  step = _position(record, spe)
  return f"epoch {step // spe}" if step % spe == 0 else f"step {step}"


def _progress(enabled: bool, desc: str, start: int, stop: int, steps_per_epoch: int):
  """A tqdm bar over the global steps ``[start, stop)``."""
  if not enabled or start >= stop:
    return None
  from tqdm.auto import tqdm
  return tqdm(total=stop - start, desc=f"{desc} {start // steps_per_epoch + 1}-"
              f"{stop // steps_per_epoch}", unit="step", dynamic_ncols=True)
