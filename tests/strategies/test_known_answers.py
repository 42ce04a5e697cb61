"""Known answers: the search finds the activation of a teacher network.

Regression data come from a one-hidden-layer teacher whose activation is sin (and,
separately, gaussian); ``experiments/mlp.py`` with one hidden layer searches over the
default candidates through ``--data FILE.npz``. The exported choice must be the teacher's
activation for at least 4 of 5 seeds.
"""

import json
import os

import numpy as np
import pytest

from actsearch import cli, configs

from conftest import ROOT
from teacher import teacher_data

SEEDS = range(5)


# gaussian runs with the slow tests (make test-all): it takes as long as sin and checks the same
@pytest.mark.parametrize("teacher", ["sin", pytest.param("gaussian", marks=pytest.mark.slow)])
def test_search_recovers_the_teacher_activation(teacher, tmp_path):
  assert teacher in configs.DEFAULT_CANDIDATES
  choices = []
  for seed in SEEDS:
    path = tmp_path / f"{teacher}{seed}.npz"
    np.savez(path, **teacher_data(teacher, seed))
    workdir = tmp_path / f"run{seed}"
    rc = cli.main(["search", "--config", os.path.join(ROOT, "experiments/mlp.py"),
                   "--data", str(path), "--workdir", str(workdir), "--seed", str(seed),
                   "--set", "model.widths=[8]", "--no-progress"])
    assert rc == 0
    arch = json.loads((workdir / "architecture.json").read_text())
    assert arch["data"]["task"] == "regression" and len(arch["layers"]) == 1
    choices.append(arch["layers"][0]["choice"])
  assert sum(c == teacher for c in choices) >= 4, choices


# The known hard case: a first-order softmax search picks identity, softplus or silu for a
# square teacher, although a square student fits it almost exactly. The validated shortlist
# (every candidate of the one slot trained briefly as a discrete network, scored on val) finds it.
SQUARE = ["search.discretize=shortlist", "search.shortlist_k=10", "search.epochs=10",
          f"search.candidates={json.dumps([*configs.DEFAULT_CANDIDATES, 'square', 'identity'])}"]


@pytest.mark.slow  # 30 s; the sin known answer and the shortlist through the search stay
def test_the_validated_shortlist_finds_the_square_teacher(tmp_path):
  choices = []
  for seed in SEEDS:
    path = tmp_path / f"square{seed}.npz"
    np.savez(path, **teacher_data("square", seed))
    workdir = tmp_path / f"run{seed}"
    rc = cli.main(["search", "--config", os.path.join(ROOT, "experiments/mlp.py"),
                   "--data", str(path), "--workdir", str(workdir), "--seed", str(seed),
                   "--set", "model.widths=[8]", "--no-progress",
                   *[a for s in SQUARE for a in ("--set", s)]])
    assert rc == 0
    arch = json.loads((workdir / "architecture.json").read_text())
    assert arch["discretize"] == "shortlist" and len(arch["selection"]["evaluated"]) == 10
    choices.append(arch["layers"][0]["choice"])
  assert sum(c == "square" for c in choices) >= 4, choices
