import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd=ROOT, env=None, timeout=600):
  """Runs ``python -m actsearch ARGS`` in a fresh process; returns the CompletedProcess."""
  full_env = {**os.environ, **(env or {})}
  return subprocess.run([sys.executable, "-m", "actsearch", *args], cwd=cwd, env=full_env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def classification_npz(tmp_path):
  """A small, learnable 3-class problem as a .npz file."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(600, 6)).astype(np.float32)
  y = (np.argmax(x[:, :3], axis=1)).astype(np.int64)
  path = tmp_path / "cls.npz"
  np.savez(path, x_train=x[:500], y_train=y[:500], x_test=x[500:], y_test=y[500:])
  return str(path)
