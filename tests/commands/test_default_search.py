"""The default `make search`: MNIST-1D, 1-D CNN. Slow (about a minute here): the slow
tier."""

import json
import time

import pytest
from tensorboard.backend.event_processing import event_accumulator

from conftest import run_cli


@pytest.mark.slow
def test_default_search_finds_a_network_with_90_percent_val_accuracy(tmp_path):
  start = time.monotonic()
  proc = run_cli("search", "--config", "experiments/mnist1d_cnn.py", "--workdir",
                 str(tmp_path), "--no-progress")
  elapsed = time.monotonic() - start
  assert proc.returncode == 0, proc.stderr
  arch = json.loads((tmp_path / "architecture.json").read_text())
  sel = arch["selection"]
  # the race: 16 networks for 5 epochs, the 4 with the lowest loss on the train split for 10
  # more, the best of them on val chosen
  assert arch["discretize"] == "race" and len(arch["candidates"]) == 16
  assert [len(c["scores"]) for c in sel["cycles"]] == [16, 4]
  first = sel["cycles"][0]
  assert first["kept"] == sorted(first["train_loss"], key=first["train_loss"].get)[:4]
  last = sel["cycles"][-1]["scores"]
  chosen = {layer["choice"] for layer in arch["layers"]}
  assert chosen == {max(last, key=last.get)} and len(arch["layers"]) == 3
  assert arch["metrics"]["val_accuracy"] == last[chosen.pop()] >= 0.90
  assert arch["strategy"]["cost"]["examples"] == (16 * 5 + 4 * 10) * 4000
  assert (tmp_path / "arch_weights.png").stat().st_size > 10_000
  acc = event_accumulator.EventAccumulator(str(tmp_path))
  acc.Reload()
  assert {f"race/{c}" for c in arch["candidates"]} <= set(acc.Tags()["scalars"])
  assert {"arch/weights", "arch/chosen_activations"} <= set(acc.Tags()["images"])
  print(f"default search: {elapsed:.0f} s, chosen network's val accuracy "
        f"{arch['metrics']['val_accuracy']:.3f}")
