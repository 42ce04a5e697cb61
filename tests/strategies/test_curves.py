"""Learning-curve extrapolation (strategies/curves.py): exact on the curves it models, the
least it can say on noisy ones, and a search that ranks by it."""

import math
import os

import numpy as np
import pytest

from actsearch import architecture, cli
from actsearch.strategies import curves

from conftest import ROOT, assert_bad_input


def power_law(m, a=0.9, b=0.5, c=0.5):
  return a - b * m ** -c


@pytest.mark.parametrize("name, f, beyond, want", [
    # the power law it fits: exact at one more doubling and at a share of one
    ("power law, x2", power_law, 2.0, power_law(8.0)),
    ("power law, x3", power_law, 3.0, power_law(12.0)),
    # straight in log m (rho = 1)
    ("log-linear", lambda m: 0.5 + 0.1 * math.log2(m), 2.0, 0.5 + 0.1 * 3),
    # accelerating (rho > 1): taken as straight in log m
    ("accelerating", lambda m: {1: 0.50, 2: 0.52, 4: 0.60}[m], 2.0, 0.60 + 0.08),
    # the last increment not positive: no further gain
    ("saturated", lambda m: {1: 0.50, 2: 0.70, 4: 0.69}[m], 2.0, 0.69),
    # a first increment not positive, the last one positive: straight
    ("dip first", lambda m: {1: 0.50, 2: 0.49, 4: 0.55}[m], 2.0, 0.61),
    ("no more data", power_law, 1.0, power_law(4.0)),
])
def test_extrapolation(name, f, beyond, want):
  scores = [f(m) for m in (1, 2, 4)]
  assert curves.extrapolate(scores, curves.RATIO, beyond) == pytest.approx(want, abs=1e-9), name


def test_a_diverged_network_extrapolates_to_minus_infinity():
  assert curves.extrapolate([0.5, float("nan"), 0.7], 2.0, 2.0) == -math.inf
  assert curves.extrapolate([0.5, 0.6, -math.inf], 2.0, 2.0) == -math.inf


def test_the_crossing_measured_on_mnist1d_is_predicted():
  """The MLP's val scores (%, 3 seeds) at 1000, 2000 and 4000 train examples; at 8000 (another
  generated val set) gelu 83.96 led tanh_shrink 82.64 (docs/choosing-defaults.md)."""
  measured = {"tanh_shrink": [53.15, 68.77, 77.12], "soft_shrink": [51.78, 67.03, 76.45],
              "gelu": [50.45, 63.04, 73.81], "silu": [49.86, 63.27, 73.80]}
  at_8000 = {k: curves.extrapolate(v, 2.0, 2.0) for k, v in measured.items()}
  assert max(at_8000, key=at_8000.get) == "gelu"
  assert max(measured, key=lambda k: measured[k][-1]) == "tanh_shrink"  # without the curve


def test_the_sizes_are_shares_of_the_train_split():
  assert curves.sizes(4000) == [1000, 2000, 4000] and curves.sizes(2) == [1, 1, 2]


TINY = ["--set", "search.strategy=darts",
        "--set", "data.num_samples=600", "--set", "data.num_test=0",
        "--set", "model.widths=[8]", "--set", "search.batch_size=40", "--set", "search.epochs=1",
        "--set", 'search.candidates=["relu","tanh"]', "--set", "search.shortlist_epochs=1",
        "--set", "search.shortlist_seeds=1", "--set", "search.learning_curve=true",
        "--no-progress"]


@pytest.mark.slow  # about 15 s: one network, compiled for each share
def test_a_search_scores_each_network_on_growing_shares_and_ranks_by_the_curve(
    tmp_path, monkeypatch):
  from actsearch.train import trainer
  real, sizes = trainer.fit, []

  def fit(recipe, objective, state, x, *args, **kwargs):
    sizes.append(len(x))
    return real(recipe, objective, state, x, *args, **kwargs)
  monkeypatch.setattr(trainer, "fit", fit)
  workdir = tmp_path / "run"
  assert cli.main(["search", "--config", os.path.join(ROOT, "experiments/mnist1d_mlp.py"),
                   "--workdir", str(workdir), *TINY, "--set", "retrain.batch_size=20",
                   "--set", "search.discretize=shortlist", "--set", "search.shortlist_k=1"]) == 0
  # 480 examples: 240 train; the one shortlisted network at 60, 120 and 240
  assert sizes == [60, 120, 240]
  arch = architecture.load(str(workdir / "architecture.json"))
  assert "learning curve" in arch["selection"]["score"]
  scores = [e["score"] for e in arch["selection"]["evaluated"]]
  assert all(np.isfinite(scores)) and len(scores) == 1


def test_too_few_train_examples_for_the_curve_is_one_line_and_exit_2(tmp_path, in_process):
  # the default retrain batch (100) is larger than a quarter of 240 train examples
  proc = in_process("search", "--config", os.path.join(ROOT, "experiments/mnist1d_mlp.py"),
                    "--workdir", tmp_path / "run", *TINY)
  assert_bad_input(proc, "search.learning_curve trains on 60 of the 240 train examples")
