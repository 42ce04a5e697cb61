"""The default `make search`: MNIST-1D, 1-D CNN. Slow (about three minutes here): the slow
tier."""

import json
import time

import pytest
from tensorboard.backend.event_processing import event_accumulator

from conftest import run_cli


@pytest.mark.slow
def test_default_search_finds_a_network_with_90_percent_val_accuracy(tmp_path):
  start = time.monotonic()
  # the default search with 10-epoch screens (its own are 40: 9 minutes here, not 3)
  proc = run_cli("search", "--config", "experiments/mnist1d_cnn.py", "--workdir",
                 str(tmp_path), "--no-progress", "--set", "search.shortlist_epochs=10")
  elapsed = time.monotonic() - start
  assert proc.returncode == 0, proc.stderr
  arch = json.loads((tmp_path / "architecture.json").read_text())
  # The Gumbel supernet itself is a noisy network (about 0.79); what counts is the chosen one.
  assert arch["metrics"]["val_accuracy"] >= 0.70
  sel = arch["selection"]
  assert arch["discretize"] == "screen" and sel["screened"] == len(arch["candidates"]) == 16
  assert sel["shortlisted"] == 8 and 16 <= len(sel["evaluated"]) <= 16 + 8
  best = max(e["score"] for e in arch["selection"]["evaluated"])
  assert best >= 0.90
  assert {layer["name"]: layer["choice"] for layer in arch["layers"]} == next(
      e["choices"] for e in arch["selection"]["evaluated"] if e["score"] == best)
  assert len(arch["layers"]) == 3
  assert (tmp_path / "arch_weights.png").stat().st_size > 10_000
  acc = event_accumulator.EventAccumulator(str(tmp_path))
  acc.Reload()
  tags = set(acc.Tags()["scalars"])
  assert all(f"arch/block{i}/act/{c}" in tags for i in range(3) for c in arch["candidates"])
  assert {"arch/weights", "arch/chosen_activations"} <= set(acc.Tags()["images"])
  print(f"default search: {elapsed:.0f} s, chosen network's val accuracy {best:.3f}")
