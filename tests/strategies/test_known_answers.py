"""Known answers: the search finds the activation of a teacher network.

Regression data come from a one-hidden-layer teacher whose activation is known (sin,
gaussian, square, tanh, signed_square, soft_shrink); ``experiments/mlp.py`` with one hidden
layer of the teacher's width searches its default candidates through ``--data FILE.npz``,
nothing else set. The exported choice must be the teacher's activation for at least 4 of 5
seeds.
"""

import json
import os

import numpy as np
import pytest

from actsearch import cli, usercode

from conftest import ROOT
from teacher import teacher_data

SEEDS = range(5)
MLP = os.path.join(ROOT, "experiments/mlp.py")


# sin stands for them all in CI's slow tier (5 searches, about 6 minutes on 2 cores); the
# others, each as long, run outside CI (`make test-long`)
@pytest.mark.parametrize("teacher", [pytest.param("sin", marks=pytest.mark.slow),
                                     *[pytest.param(t, marks=pytest.mark.long) for t in
                                       ("gaussian", "square", "tanh", "signed_square",
                                        "soft_shrink")]])
def test_the_default_path_recovers_the_teacher_activation(teacher, tmp_path):
  assert teacher in usercode.load_config(MLP).search.candidates
  choices = []
  for seed in SEEDS:
    path = tmp_path / f"{teacher}{seed}.npz"
    np.savez(path, **teacher_data(teacher, seed))
    workdir = tmp_path / f"run{seed}"
    rc = cli.main(["search", "--config", MLP, "--data", str(path), "--workdir", str(workdir),
                   "--seed", str(seed), "--set", "model.widths=[8]", "--no-progress"])
    assert rc == 0
    arch = json.loads((workdir / "architecture.json").read_text())
    assert arch["data"]["task"] == "regression" and len(arch["layers"]) == 1
    assert arch["selection"]["method"] == "screen"
    choices.append(arch["layers"][0]["choice"])
  assert sum(c == teacher for c in choices) >= 4, choices
