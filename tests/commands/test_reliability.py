"""What a shared machine does to a run: a second run on a live workdir, non-finite steps, a
damaged newest checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from actsearch.train import health, hooks
from actsearch.train.checkpoint import Checkpointer
from actsearch.train.lock import WorkdirLock

from conftest import ROOT, arch_weights, assert_bad_input, checkpoint_state, run_cli

# 480 training examples -> 240 train / 240 val; batch 24 -> 10 steps an epoch.
SETS = ["search.strategy=darts", "data.num_samples=600",
        "data.num_test=0", "search.discretize=argmax",
        'search.candidates=["default"]',
        "model.widths=[16,12]", "search.batch_size=24", "search.epochs=3"]


def _args(workdir, *sets):
  return ["search", "--config", "experiments/mnist1d_mlp.py", "--workdir", str(workdir),
          "--no-progress", *[a for s in [*SETS, *sets] for a in ("--set", s)]]


def _paused(args, marker, step):
  """``actsearch ARGS`` started and paused (by the loop's test hook) after ``step`` steps."""
  env = {**os.environ, hooks.PAUSE_ENV: f"{step}:{marker}"}
  proc = subprocess.Popen([sys.executable, "-m", "actsearch", *args], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 600  # a safety net: the test waits for the marker
  while not os.path.exists(marker) and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.05)
  assert os.path.exists(marker) and proc.poll() is None
  return proc


@pytest.mark.slow  # a chain of processes
def test_a_live_run_holds_its_workdir_and_a_killed_one_does_not(tmp_path):
  workdir = tmp_path / "run"
  holder = _paused(_args(workdir), str(tmp_path / "paused"), step=15)
  try:
    second = run_cli(*_args(workdir))
    assert_bad_input(second, f"held by a live run (pid {holder.pid}", "use another --workdir")
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  resumed = run_cli(*_args(workdir))  # the lock died with its holder
  assert resumed.returncode == 0, resumed.stderr
  assert json.loads((workdir / "architecture.json").read_text())["layers"]


@pytest.mark.slow  # retrain's lock (12 s); the search's lock test stays
def test_a_retrain_on_a_held_workdir_is_refused(tmp_path):
  arch = tmp_path / "s" / "architecture.json"
  assert run_cli(*_args(tmp_path / "s", "search.epochs=1")).returncode == 0
  with WorkdirLock(str(tmp_path / "rt")):
    proc = run_cli("retrain", str(arch), "--workdir", str(tmp_path / "rt"), "--seeds", "1",
                   "--epochs", "1", "--baselines", "relu", "--no-progress")
  assert_bad_input(proc, "held by a live run (pid")
  assert sorted(os.listdir(tmp_path / "rt")) == [".lock"]


@pytest.mark.slow  # a search that stops (24 s); a diverged screen network is checked fast
def test_stop_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  workdir = tmp_path / "stop"
  proc = run_cli(*_args(workdir), env={health.POISON_ENV: "14"})  # inside epoch 2
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in proc.stderr
  assert "non-finite loss at step 14 (epoch 2); the last checkpoint is epoch 1" in lines[0]
  assert Checkpointer(str(workdir / "checkpoints"), read_only=True).latest() == 10
  state, record = checkpoint_state(workdir, SETS)
  assert record["epoch"] == 1 and int(state.step) == 10
  import jax
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


@pytest.mark.slow  # 20 s, as the stop above
def test_skip_drops_the_step_finishes_and_reports_the_count(tmp_path):
  workdir = tmp_path / "skip"
  proc = run_cli(*_args(workdir, "search.on_nonfinite=skip"), env={health.POISON_ENV: "14"})
  assert proc.returncode == 0, proc.stderr
  acc = event_accumulator.EventAccumulator(str(workdir))
  acc.Reload()
  counts = [e.value for e in acc.Scalars("health/skipped_steps")]
  assert counts == [0.0, 1.0, 1.0]
  lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in lines if r.get("health/skipped") == 1.0] == [15]
  state, _ = checkpoint_state(workdir, [*SETS, "search.on_nonfinite=skip"])
  import jax
  assert int(state.step) == 30
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
  assert np.isfinite(arch_weights(workdir)).all()


@pytest.mark.slow
def test_skip_stops_after_too_many_in_a_row(tmp_path):
  proc = run_cli(*_args(tmp_path / "s", "search.on_nonfinite=skip", "search.max_skipped=1"),
                 env={health.POISON_ENV: "14"})
  assert proc.returncode == 1
  assert "1 non-finite steps in a row up to step 14 (epoch 2)" in proc.stderr


@pytest.mark.slow  # retrain's skip per seed (24 s); the search's skip test stays
def test_retrain_skips_a_poisoned_step_for_each_seed(tmp_path):
  assert run_cli(*_args(tmp_path / "s", "search.epochs=1")).returncode == 0
  proc = run_cli("retrain", str(tmp_path / "s" / "architecture.json"), "--workdir",
                 str(tmp_path / "rt"), "--seeds", "2", "--epochs", "2", "--baselines", "",
                 "--set", "retrain.on_nonfinite=skip", "--no-progress",
                 env={health.POISON_ENV: "5"})
  assert proc.returncode == 0, proc.stderr
  report = json.loads((tmp_path / "rt" / "results.json").read_text())
  assert all(np.isfinite(r["test_loss"]) for r in report["variants"]["found"]["seeds"])
  for seed in (0, 1):
    acc = event_accumulator.EventAccumulator(str(tmp_path / "rt" / "found" / f"seed{seed}"))
    acc.Reload()
    assert acc.Scalars("health/skipped_steps")[-1].value == 1.0


@pytest.mark.slow  # a chain of processes
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
  damaged = tmp_path / "damaged"
  assert run_cli(*_args(damaged), "--epochs", "2").returncode == 0  # checkpoints 10 and 20
  files = [p for p in (damaged / "checkpoints" / "20" / "default").rglob("*") if p.is_file()]
  assert files
  for path in files:
    path.write_bytes(b"")  # truncated
  resumed = run_cli(*_args(damaged))
  assert resumed.returncode == 0, resumed.stderr
  assert "checkpoint 20 in" in resumed.stderr and "is damaged" in resumed.stderr
  assert run_cli(*_args(tmp_path / "straight")).returncode == 0
  a, record_a = checkpoint_state(damaged, SETS)
  b, record_b = checkpoint_state(tmp_path / "straight", SETS)
  assert record_a == record_b and int(a.step) == 30
  import jax
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # bit for bit
