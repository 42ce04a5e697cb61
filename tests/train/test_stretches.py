"""The loop's stretches between checkpoints, the resume position of old and new records, the
stretch-at-once non-finite check, which config changes a resumed run accepts, and the
pipeline: a stretch written while the next one runs."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from actsearch import configs
from actsearch.commands import workdirs
from actsearch.errors import UserError
from actsearch.train import loop, parallel
from actsearch.train.checkpoint import Checkpointer


@pytest.mark.parametrize("start, stop, spe, every, expected", [
    (0, 30, 10, 0, [(0, 10), (10, 20), (20, 30)]),                        # epochs only
    (0, 30, 10, 4, [(0, 4), (4, 8), (8, 10), (10, 12), (12, 16), (16, 20), (20, 24),
                    (24, 28), (28, 30)]),                                    # tests/test_kill.py
    (13, 30, 10, 4, [(13, 16), (16, 20), (20, 24), (24, 28), (28, 30)]),   # resumed mid-epoch
    (0, 8, 4, 3, [(0, 3), (3, 4), (4, 6), (6, 8)]),                          # the retrain kills
    (0, 20, 10, 25, [(0, 10), (10, 20)]),                                    # every > epoch
    (20, 20, 10, 4, []),                                                     # nothing left
])
def test_stretches_end_at_epochs_and_at_multiples_of_every(start, stop, spe, every, expected):
  got = loop.stretches(start, stop, spe, every)
  assert got == expected
  assert all(b - a >= 1 for a, b in got)  # no empty stretch


def test_a_record_without_a_step_resumes_at_its_epoch():
  assert loop._position({"epoch": 3, "metrics": {}}, 62) == 186   # written before step keys
  assert loop._position({"epoch": 3, "step": 190, "metrics": {}}, 62) == 190


def _rows(losses, skipped=None):
  """Packed metric rows (``loop.packed``: keys sorted) of a stretch, one per step."""
  keys = ["health/skipped", "train/loss", "val_batch/loss"]
  skipped = skipped or [0.0] * len(losses)
  return [np.array([s, a, b], np.float32) for (a, b), s in zip(losses, skipped)], keys


@pytest.mark.parametrize("losses, skipped, expected", [
    ([(1.0, 2.0)] * 5, None, None),                                # all finite
    ([(1.0, 2.0), (np.nan, 2.0), (np.inf, 1.0)], None, 1),         # the first bad one
    ([(1.0, 2.0), (1.0, 2.0), (1.0, -np.inf)], None, 2),           # any loss column
    ([(1.0, 2.0)] * 3, [0.0, 0.0, 1.0], 2),                        # an update dropped
])
def test_a_stretch_is_checked_at_once_for_its_first_non_finite_step(losses, skipped, expected):
  rows, keys = _rows(losses, skipped)
  assert loop._first_bad(rows, keys) == expected
  # the same answer as the per-step checks
  per_step = [not loop._finite(dict(zip(keys, r))) or loop._skipped(dict(zip(keys, r))).any()
              for r in rows]
  assert expected == (per_step.index(True) if any(per_step) else None)


def test_seed_rows_are_bad_when_any_seed_is():
  keys = ["train/loss"]
  rows = [np.array([[1.0], [1.0]]), np.array([[1.0], [np.nan]])]  # [seeds, K] per step
  assert loop._first_bad(rows, keys) == 1


def test_checkpoints_are_written_in_the_main_thread_on_cpu_unless_asked():
  assert jax.default_backend() == "cpu"
  assert loop.background_saves(None) is False
  assert loop.background_saves(True) is True and loop.background_saves(False) is False


def _prepare(tmp_path, **changes):
  cfg = configs.base_config()
  for dotted, value in changes.items():
    node, leaf = cfg, dotted.split(".")
    for part in leaf[:-1]:
      node = node[part]
    node[leaf[-1]] = value
  workdirs.prepare(str(tmp_path), cfg, primary=True)
  return json.loads((tmp_path / "config.json").read_text())


@pytest.mark.parametrize("key, value", [
    ("search.eval_every", 2), ("search.eval_batch_size", 64), ("search.checkpoint_every", 7),
    ("search.async_checkpoints", True), ("retrain.checkpoint_every", 3),
    ("retrain.async_checkpoints", False), ("data.resident_mb", 0.0),
])
def test_a_run_resumes_with_another_cadence_and_the_file_says_so(tmp_path, key, value):
  assert key in configs.RUN_ONLY
  _prepare(tmp_path)
  stored = _prepare(tmp_path, **{key: value})  # no refusal
  section, leaf = key.split(".")
  assert stored[section][leaf] == value


def test_a_run_with_another_computation_is_still_refused(tmp_path):
  _prepare(tmp_path)
  with pytest.raises(UserError, match=r"different config \(search.epochs\)"):
    _prepare(tmp_path, **{"search.epochs": 3, "search.eval_every": 2})


class _Logger:
  """A logger that records what the loop logs, in order."""

  def __init__(self, events):
    self.events = events

  def resume_at(self, step):
    self.events.append(("resume", step))

  def scalars(self, step, values):
    self.events.append(("log", step))

  def flush(self):
    pass


def _counting_task(events, interrupt_at=None, **changes):
  """3 epochs of 4 steps (or as ``changes`` say); the state counts the steps taken (``+ 1``
  per step, on the devices, state donated); ``("step", g)`` is recorded as global step g is
  dispatched."""
  spe = 4

  def batches(epoch, first, stop):
    for i in range(first, stop):
      events.append(("step", epoch * spe + i + 1))
      if epoch * spe + i + 1 == interrupt_at:
        raise KeyboardInterrupt
      yield (parallel.replicate(np.float32(1.0)),)
  step = parallel.pmapped(lambda s, x: (s + x, {"train/loss": s}))
  return dataclasses.replace(
      loop.Task(step=step, batches=batches, steps_per_epoch=spe, stop_epoch=3), **changes)


@pytest.fixture
def saves(monkeypatch):
  """``("save", step)`` recorded in the events list this fixture returns."""
  events = []
  real = Checkpointer.save

  def save(self, step, *args, **kwargs):
    events.append(("save", step))
    return real(self, step, *args, **kwargs)
  monkeypatch.setattr(Checkpointer, "save", save)
  return events


def test_a_stretch_is_written_while_the_next_one_runs(tmp_path, saves):
  events = saves
  state, record = loop.run(_counting_task(events), np.float32(0.0), str(tmp_path),
                           _Logger(events), progress=False)
  assert float(state) == 12 and record["step"] == 12
  assert events == [("resume", 0), *[("step", g) for g in range(1, 9)],
                    *[("log", g) for g in range(1, 5)], ("save", 4),
                    *[("step", g) for g in range(9, 13)],
                    *[("log", g) for g in range(5, 9)], ("save", 8),
                    *[("log", g) for g in range(9, 13)], ("save", 12)]
  # Each checkpoint holds the state at its own step, not a later one (the next stretch's
  # steps took the device buffers while the host copy waited to be written).
  ckpt = Checkpointer(str(tmp_path / "checkpoints"), read_only=True)
  assert [float(ckpt.restore(np.float32(0.0), s)[0]) for s in (8, 12)] == [8.0, 12.0]


def test_an_interrupt_in_the_next_stretch_still_writes_the_one_before(tmp_path, saves):
  events = saves
  with pytest.raises(KeyboardInterrupt):
    loop.run(_counting_task(events, interrupt_at=6), np.float32(0.0), str(tmp_path),
             _Logger(events), progress=False)
  assert events[-3:] == [("log", 3), ("log", 4), ("save", 4)]
  ckpt = Checkpointer(str(tmp_path / "checkpoints"), read_only=True)
  assert ckpt.latest() == 4 and float(ckpt.restore(np.float32(0.0))[0]) == 4.0
  events.clear()  # resumed: from step 5, to the same end
  state, _ = loop.run(_counting_task(events), np.float32(0.0), str(tmp_path), _Logger(events),
                      progress=False)
  assert events[:2] == [("resume", 4), ("step", 5)] and float(state) == 12


class _Evaluate:
  """An evaluator that records when it is compiled and called."""

  def __init__(self, events):
    self.events = events

  def compile(self, state_r):
    self.events.append(("compile",))

  def __call__(self, state_r):
    self.events.append(("evaluate",))
    return {"val/loss": 0.0}


@pytest.mark.parametrize("changes, evaluated", [
    ({}, [4, 8, 12]),                                      # every epoch
    ({"eval_every": 2}, [8, 12]),                          # epoch 2 and the last
    ({"eval_every": 2, "stop_epoch": 1, "epochs": 3}, []),  # none in this invocation
])
def test_the_evaluator_compiles_before_the_first_step_if_it_will_run(tmp_path, changes,
                                                                     evaluated):
  events = []
  evaluate = _Evaluate(events)
  loop.run(_counting_task(events, evaluate=evaluate, **changes), np.float32(0.0),
           str(tmp_path), _Logger(events), progress=False)
  compiled = [i for i, e in enumerate(events) if e == ("compile",)]
  assert compiled == ([1] if evaluated else [])  # once, right after resume_at, before step 1
  # each evaluation after its epoch's last step, before the next epoch's first
  last_step = [max(e[1] for e in events[:i] if e[0] == "step")
               for i, e in enumerate(events) if e == ("evaluate",)]
  assert last_step == evaluated
