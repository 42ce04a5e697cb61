"""What the whole suite shares: one cache per run, subprocess helpers, small data fixtures.

The suite compiles the same small programs again and again: each test builds its steps anew
and each subprocess of the kill, resume and multi-process tests compiles them from scratch.
JAX's persistent compilation cache, in a temporary directory made for this run (never the
user's home) and inherited by every subprocess through the environment, compiles each of them
once; its thresholds are set to zero so that the suite's small programs are cached too.
actsearch's own cache (the CPU kernel, generated MNIST-1D) is likewise a directory of this
run, so a run depends on nothing left on the machine; the kernel is built once at the start,
before any subprocess could print its build line on a stderr a test reads. Tests that count
compilations count a program loaded from the cache as one.
"""

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Set before JAX is imported anywhere in this process; subprocesses inherit them, and so do
# pytest-xdist's workers, which share the run's cache with the process that started them.
_SHARED = "ACTSEARCH_TEST_RUN_CACHE"
if _SHARED not in os.environ:
  os.environ[_SHARED] = tempfile.mkdtemp(prefix="actsearch-tests-")
  atexit.register(shutil.rmtree, os.environ[_SHARED], ignore_errors=True)
_RUN_CACHE = os.environ[_SHARED]
os.environ.update({
    "JAX_COMPILATION_CACHE_DIR": os.path.join(_RUN_CACHE, "jax"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    "ACTSEARCH_CACHE_DIR": os.path.join(_RUN_CACHE, "actsearch"),
})
# The suite compiles as the CLI does (XLA's copy insertion: train/allocator.py), in-process too.
from actsearch.train import allocator  # noqa: E402  (imports no JAX backend)

allocator.fewer_copies()
# Every pass takes the kernel (where it is built) unless a test says otherwise: the machine's
# measured plan would make results depend on timing.
os.environ.setdefault("ACTSEARCH_KERNELS", "1")


def pytest_sessionstart(session):
  from actsearch.space import kernels

  kernels.available()  # builds the kernel into this run's cache (where a compiler exists)


def run_cli(*args, cwd=ROOT, env=None, timeout=600):
  """Runs ``python -m actsearch ARGS`` in a fresh process; returns the CompletedProcess."""
  full_env = {**os.environ, **(env or {})}
  return subprocess.run([sys.executable, "-m", "actsearch", *args], cwd=cwd, env=full_env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def in_process(capsys):
  """``actsearch ARGS`` run by ``cli.main`` in this process (no interpreter or JAX start-up:
  seconds less per call than ``run_cli``), as a CompletedProcess of its exit code and output."""
  from actsearch import cli

  def run(*args):
    capsys.readouterr()
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out.out, out.err)
  return run


def assert_bad_input(proc, *needles):
  assert proc.returncode == 2, (proc.returncode, proc.stderr)
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert "Traceback" not in proc.stderr
  for needle in needles:
    assert needle in lines[0], lines[0]


def pause_and_kill(args, marker, step, cwd=ROOT, where="step"):
  """Runs ``actsearch ARGS`` until it has taken ``step`` steps (the loop's test hook writes
  ``marker`` and waits there; ``where="save"``: at the end of that step's epoch, before its
  checkpoint), then kills it with SIGKILL. No guessed delays: the moment of the kill is the
  step the test names."""
  from actsearch.train import hooks

  env = {**os.environ, hooks.PAUSE_ENV: f"{step}:{marker}:{where}"}
  proc = subprocess.Popen([sys.executable, "-m", "actsearch", *args], cwd=cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 600  # a safety net only: the test waits for the marker
  while not os.path.exists(marker) and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.05)
  assert proc.poll() is None, f"the run ended before step {step}: {proc.stderr.read()}"
  assert os.path.exists(marker), "the run did not reach the step in 10 minutes"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  proc.stderr.close()


@pytest.fixture
def classification_npz(tmp_path):
  """A small, learnable 3-class problem as a .npz file."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(600, 6)).astype(np.float32)
  y = (np.argmax(x[:, :3], axis=1)).astype(np.int64)
  path = tmp_path / "cls.npz"
  np.savez(path, x_train=x[:500], y_train=y[:500], x_test=x[500:], y_test=y[500:])
  return str(path)


def arch_weights(workdir) -> np.ndarray:
  """The relaxed weights of ``workdir/architecture.json``, ``[slots, candidates]``."""
  arch = json.loads((workdir / "architecture.json").read_text())
  return np.array([[layer["weights"][c] for c in arch["candidates"]] for layer in arch["layers"]])


def checkpoint_state(workdir, sets, experiment="experiments/mnist1d_mlp.py"):
  """The newest checkpoint of a run made with ``experiment`` and ``--set sets``."""
  from actsearch import configs, usercode
  from actsearch.strategies import supernet
  from actsearch.train.checkpoint import Checkpointer

  cfg = usercode.load_config(os.path.join(ROOT, experiment))
  configs.apply_overrides(cfg, sets)
  su = supernet.setup(cfg)
  return Checkpointer(str(workdir / "checkpoints"), read_only=True).restore(su.state)


def assert_devices_agree(one, two) -> list:
  """The states of a run on one and on two devices agree within 1e-5 (alpha, weights, the
  rest); returns the first's batch statistics (``nnx.BatchStat``), for the caller to check
  that they moved."""
  import chex
  import jax
  from flax import nnx

  for part in ("arch", "params", "rest"):
    chex.assert_trees_all_close(getattr(two, part), getattr(one, part), atol=1e-5, rtol=0)
  return [v for v in jax.tree.leaves(one.rest, is_leaf=lambda v: isinstance(v, nnx.Variable))
          if isinstance(v, nnx.BatchStat)]
