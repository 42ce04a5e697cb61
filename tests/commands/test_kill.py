"""Killed at any moment, a run resumes to the uninterrupted result, bit for bit.

Each process is killed with SIGKILL at a moment the test names through the loop's test hook
(``hooks.py``): after a step, before a checkpoint save, inside one (files written, not
committed), inside the final export (temporary file written, not renamed). The next process
resumes from the last complete checkpoint. The final state, the exported files and every
logged value must equal those of a run that was never interrupted, and no step may be logged
twice.
"""

import json
import os
import shlex
import subprocess
import sys

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from actsearch.train.checkpoint import Checkpointer

from conftest import ROOT, checkpoint_state, pause_and_kill, run_cli

# 480 training examples -> 240 train / 240 val; batch 24 -> 10 steps an epoch, 30 in all, a
# checkpoint every 4 steps and at each epoch's end: 4, 8, 10, 12, 16, 20, 24, 28, 30.
SETS = ["search.strategy=darts", "data.num_samples=600",
        "data.num_test=0", "search.discretize=argmax",
        'search.candidates=["default"]',
        "model.widths=[16,12]", "search.batch_size=24", "search.epochs=3",
        "search.checkpoint_every=4",
        # checkpoints written in the background (a kill inside one is the harder case; the
        # retrain kills below use the CPU default, saves in the main thread)
        "search.async_checkpoints=true", "search.eval_every=1"]

# (moment, steps this process takes first, the newest complete checkpoint after the kill).
# Every process resumes where the one before left its newest complete checkpoint.
SEARCH_KILLS = [
    ("step", 3, None),     # inside the first stretch
    ("insave", 4, None),   # inside the first save: its files are not a checkpoint
    ("step", 6, 4),
    ("save", 5, 8),        # from 4: steps 5-10, killed before the save of step 10
    ("insave", 3, 10),     # from 8: saves 10, killed inside the save of 12
    ("step", 9, 16),       # from 10 to step 19
    ("save", 1, 16),       # from 16: epoch 2's end logged and evaluated, not saved
    ("insave", 8, 20),     # from 16: saves 20, killed inside the save of 24
    ("step", 10, 28),      # from 20: every step taken, the last one not saved
    ("export", 2, 30),     # from 28: saved 30, killed inside architecture.json's write
]


def _search(workdir):
  return ["search", "--config", "experiments/mnist1d_mlp.py", "--workdir", str(workdir),
          "--no-progress", *[a for s in SETS for a in ("--set", s)]]


def _latest(run_dir):
  path = run_dir / "checkpoints"
  return Checkpointer(str(path), read_only=True).latest() if path.is_dir() else None


def _without_times(tree):
  """A JSON value without the wall times and provenance that differ between two runs."""
  if isinstance(tree, dict):
    return {k: _without_times(v) for k, v in tree.items()
            if k not in ("seconds", "wall_time_s", "provenance", "time")}
  if isinstance(tree, list):
    return [_without_times(v) for v in tree]
  return tree


def _assert_same_leaves(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _logged(directory):
  """Every logged scalar, ``{tag: [(step, value), ...]}``, from the event files."""
  acc = event_accumulator.EventAccumulator(str(directory), size_guidance={"scalars": 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _assert_each_step_once(logged):
  for tag, events in logged.items():
    steps = [s for s, _ in events]
    assert len(steps) == len(set(steps)), f"{tag} logs a step twice: {steps}"


@pytest.mark.slow  # a chain of 12 processes (make test-slow; CI runs it)
def test_a_search_killed_at_ten_moments_ends_as_if_never_killed(tmp_path):
  killed = tmp_path / "killed"
  for i, (where, steps, newest) in enumerate(SEARCH_KILLS):
    pause_and_kill(_search(killed), str(tmp_path / f"paused{i}"), step=steps, where=where)
    assert _latest(killed) == newest, (i, where)
  # Killed inside the export: no architecture.json at all, never a partial one.
  assert not (killed / "architecture.json").exists()
  resumed = run_cli(*_search(killed))
  assert resumed.returncode == 0, resumed.stderr
  straight = tmp_path / "straight"
  assert run_cli(*_search(straight)).returncode == 0

  a, record_a = checkpoint_state(killed, SETS)
  b, record_b = checkpoint_state(straight, SETS)
  assert record_a == record_b and int(a.step) == 30
  _assert_same_leaves(a, b)  # weights, alpha, both optimizer states, rng, step
  arch_a, arch_b = (json.loads((d / "architecture.json").read_text()) for d in (killed, straight))
  assert _without_times(arch_a) == _without_times(arch_b)

  logged_a, logged_b = _logged(killed), _logged(straight)
  _assert_each_step_once(logged_a)
  assert [s for s, _ in logged_a["train/loss"]] == list(range(1, 31))
  assert [s for s, _ in logged_a["val/loss"]] == [10, 20, 30]
  assert logged_a == logged_b  # every logged value, bit for bit
  lines = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
  assert lines == [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]


# Retrain: 480 examples, batch 100 -> 4 steps an epoch, 2 epochs, a checkpoint every 3 steps
# and at each epoch's end (3, 4, 6, 8); variants "found" then "relu", 2 seeds each.
RETRAIN_SETS = ["retrain.batch_size=100", "retrain.checkpoint_every=3"]
RETRAIN_KILLS = [
    # (moment, steps this process takes first, newest checkpoint of found, of relu)
    ("step", 5, 4, None),      # inside the found variant
    ("insave", 6, 8, None),    # found finishes (from 4); killed inside relu's first save
    ("export", 8, 8, 8),       # relu trains, killed inside the write of its result.json
]


def _retrain(arch, workdir):
  return ["retrain", str(arch), "--workdir", str(workdir), "--seeds", "2", "--epochs", "2",
          "--baselines", "relu", "--no-progress",
          *[a for s in RETRAIN_SETS for a in ("--set", s)]]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("searched")
  sets = [s for s in SETS if not s.startswith("search.epochs")] + ["search.epochs=1"]
  proc = run_cli("search", "--config", "experiments/mnist1d_mlp.py", "--workdir", str(workdir),
                 "--no-progress", *[a for s in sets for a in ("--set", s)])
  assert proc.returncode == 0, proc.stderr
  return workdir / "architecture.json"


def _retrained_state(workdir, variant):
  """The newest checkpoint of a retrain variant, restored as it was saved."""
  return Checkpointer(str(workdir / variant / "checkpoints"), read_only=True).restore(None)


@pytest.mark.slow  # a chain of 6 processes
def test_a_retrain_killed_at_three_moments_ends_as_if_never_killed(searched, tmp_path):
  arch = tmp_path / "arch.json"
  arch.write_bytes(searched.read_bytes())
  killed = tmp_path / "killed"
  for i, (where, steps, found, relu) in enumerate(RETRAIN_KILLS):
    pause_and_kill(_retrain(arch, killed), str(tmp_path / f"paused{i}"), step=steps,
                   where=where)
    assert (_latest(killed / "found"), _latest(killed / "relu")) == (found, relu), (i, where)
  assert (killed / "found" / "result.json").exists()
  assert not (killed / "relu" / "result.json").exists()  # never a partial one
  assert not (killed / "results.json").exists()
  resumed = run_cli(*_retrain(arch, killed))
  assert resumed.returncode == 0, resumed.stderr
  straight = tmp_path / "straight"
  assert run_cli(*_retrain(arch, straight)).returncode == 0

  report_a, report_b = (json.loads((d / "results.json").read_text()) for d in (killed, straight))
  assert _without_times(report_a) == _without_times(report_b)
  for variant in ("found", "relu"):
    state_a, record_a = _retrained_state(killed, variant)
    state_b, record_b = _retrained_state(straight, variant)
    assert record_a == record_b
    _assert_same_leaves(state_a, state_b)
    for seed in ("seed0", "seed1"):
      logged_a = _logged(killed / variant / seed)
      _assert_each_step_once(logged_a)
      assert [s for s, _ in logged_a["train/loss"]] == list(range(1, 9))
      assert [s for s, _ in logged_a["test/loss"]] == [8]
      assert logged_a == _logged(straight / variant / seed)


@pytest.mark.slow  # a chain of 3 processes
def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path):
  """The second invocation may write no file larger than 64 KiB (``RLIMIT_FSIZE``: the OS
  refuses the write with EFBIG, as a full disk refuses it with ENOSPC); its first checkpoint
  (the state of a 256-wide MLP, about 1 MB) cannot be written."""
  workdir = tmp_path / "full"
  sets = [s for s in SETS if not s.startswith("model.widths")] + ["model.widths=[256,256]"]
  args = ["search", "--config", "experiments/mnist1d_mlp.py", "--workdir", str(workdir),
          "--no-progress", *[a for s in sets for a in ("--set", s)]]
  assert run_cli(*args, "--epochs", "1").returncode == 0
  assert _latest(workdir) == 10

  # The limit is set by the shell that execs the run (no fork of this JAX process).
  command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "actsearch", *args])
  full = subprocess.run(["bash", "-c", f"ulimit -f 64 && exec {command}"], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)
  assert full.returncode == 1
  lines = full.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in full.stderr, full.stderr
  assert "could not save checkpoint 12" in lines[0] and "checkpoint 10 is kept" in lines[0]
  assert _latest(workdir) == 10
  state, record = checkpoint_state(workdir, sets)
  assert record["step"] == 10 and int(state.step) == 10
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
  resumed = run_cli(*args, "--epochs", "2")  # room again: the run goes on from checkpoint 10
  assert resumed.returncode == 0, resumed.stderr
  assert _latest(workdir) == 20
  assert not [p for p in os.listdir(workdir / "checkpoints") if "tmp" in p]


@pytest.mark.slow  # two processes
def test_an_unwritable_workdir_is_one_line(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory\n")
  proc = run_cli(*_search(blocker / "run"))
  assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
  assert "cannot use" in proc.stderr and "Traceback" not in proc.stderr
  # A workdir whose checkpoint directory cannot be made (a file stands in its place).
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "checkpoints").write_text("in the way\n")
  proc = run_cli(*_search(workdir))
  assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
  assert "cannot create" in proc.stderr and "Traceback" not in proc.stderr
  assert (workdir / "checkpoints").read_text() == "in the way\n"
