"""The default `make search`: MNIST-1D, 1-D CNN. Slow (about 1.5 minutes here): `make test-all`."""

import json
import time

import pytest
from tensorboard.backend.event_processing import event_accumulator

from conftest import run_cli


@pytest.mark.slow
def test_default_search_reaches_80_percent_val_accuracy(tmp_path):
  start = time.monotonic()
  proc = run_cli("search", "--config", "experiments/mnist1d_cnn.py", "--workdir",
                 str(tmp_path), "--no-progress")
  elapsed = time.monotonic() - start
  assert proc.returncode == 0, proc.stderr
  arch = json.loads((tmp_path / "architecture.json").read_text())
  assert arch["metrics"]["val_accuracy"] >= 0.80
  assert len(arch["layers"]) == 3
  acc = event_accumulator.EventAccumulator(str(tmp_path))
  acc.Reload()
  tags = set(acc.Tags()["scalars"])
  assert all(f"arch/block{i}/act/{c}" in tags for i in range(3) for c in arch["candidates"])
  print(f"default search: {elapsed:.0f} s, val accuracy {arch['metrics']['val_accuracy']:.3f}")
