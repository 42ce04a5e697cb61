"""A crash or a kill loses at most the work since the last checkpoint; divergence is reported."""

import pytest

from actsearch.train.checkpoint import Checkpointer

from conftest import assert_bad_input, run_cli

SETS = ["search.strategy=darts", "data.num_samples=2000",
        "data.num_test=0", "search.discretize=argmax",
        'search.candidates=["default"]',
        "model.widths=[32,32]",
        "search.batch_size=16", "search.epochs=6"]


def _args(workdir, *extra):
  return ["search", "--config", "experiments/mnist1d_mlp.py", "--workdir", str(workdir),
          "--no-progress", *[a for s in SETS for a in ("--set", s)], *extra]


# 24 s; the fast tier stops on a poisoned step (test_reliability.py), this on a real divergence
@pytest.mark.slow
def test_a_diverging_search_stops_with_one_line_and_keeps_no_bad_checkpoint(tmp_path):
  proc = run_cli(*_args(tmp_path / "nan", "--set", "optim.weights.lr=1e30",
                        "--set", "optim.weights.grad_clip=1e30"))
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "non-finite loss at step" in lines[0]
  assert "Traceback" not in proc.stderr
  ckpt = tmp_path / "nan" / "checkpoints"
  assert not ckpt.exists() or Checkpointer(str(ckpt), read_only=True).latest() is None


def test_export_of_a_run_without_checkpoint_is_bad_input(tmp_path, in_process):
  assert_bad_input(in_process("export", tmp_path), "not a search run")
