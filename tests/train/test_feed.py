"""Data resident on the devices and host batches give a step the same examples: a search and
a retrain end alike on either path, and the host path says why it is taken."""

import json
import os

import jax
import numpy as np
import pytest

from actsearch import cli
from actsearch.train import feed
from actsearch.train import step as train_step

from conftest import ROOT, checkpoint_state

TINY = ["search.strategy=darts", "data.num_samples=600",
        "data.num_test=0", "search.discretize=argmax",
        'search.candidates=["default"]',
        "model.widths=[16,12]", "search.batch_size=32", "search.epochs=2"]


def _search(workdir, *sets):
  return cli.main(["search", "--config", os.path.join(ROOT, "experiments/mnist1d_mlp.py"),
                   "--workdir", str(workdir), "--no-progress",
                   *[a for s in [*TINY, *sets] for a in ("--set", s)]])


@pytest.mark.slow
def test_a_search_ends_alike_on_device_and_host_batches(tmp_path, capsys):
  assert _search(tmp_path / "resident") == 0
  assert "batches are gathered on the host" not in capsys.readouterr().err
  assert _search(tmp_path / "host", "data.resident_mb=0") == 0
  assert "exceed data.resident_mb (0); batches are gathered on the host" in capsys.readouterr().err
  a, rec_a = checkpoint_state(tmp_path / "resident", TINY)
  b, rec_b = checkpoint_state(tmp_path / "host", [*TINY, "data.resident_mb=0"])
  assert rec_a == rec_b and int(a.step) == 14
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("members", [False, True])
def test_both_paths_feed_the_same_examples(members):
  """The step sees, at every step of an epoch, the rows the epoch's order names."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 3)).astype(np.float32)
  y = np.arange(40, dtype=np.int32)
  spe, batch = 5, 8
  orders = lambda epoch: [np.stack([np.random.default_rng([s, epoch]).permutation(40)
                                    .reshape(spe, batch) for s in range(2)])
                          if members else
                          np.random.default_rng([0, epoch]).permutation(40).reshape(spe, batch)]
  seen = {}
  for limit in (1.0, 0.0):
    f = feed.Feed([(x, y)], orders, spe, limit, members=members)
    assert f.resident == (limit > 0)

    def step(state, b):
      return state.replace(step=state.step + 1), {"y": b["y"]}
    fn = f.wrap(step)
    if members:
      fn = jax.vmap(fn, in_axes=f.in_axes())
    pm = jax.pmap(fn)
    state = train_step.TrainState(step=np.zeros((2,) if members else (), np.int32),
                                  params={}, arch={}, rest={}, opt=None)
    state = jax.tree.map(lambda v: np.asarray(v)[None], state)
    got = []
    for epoch in range(2):
      for args in f.batches(epoch, 1 if epoch == 0 else 0, spe):
        if epoch == 0 and not got:  # resumed at step 1 of epoch 0
          state = state.replace(step=state.step + 1)
        state, m = pm(state, *args)
        got.append(np.asarray(m["y"])[0])
    seen[limit] = np.stack(got)
  np.testing.assert_array_equal(seen[1.0], seen[0.0])
  expected = [orders(e)[0][..., i, :] for e in range(2) for i in range(1 if e == 0 else 0, spe)]
  np.testing.assert_array_equal(seen[1.0], np.stack(expected))


@pytest.mark.slow  # 14 s; the unit-level equivalence stays
def test_a_retrain_ends_alike_on_device_and_host_batches(tmp_path):
  assert _search(tmp_path / "s", "search.epochs=1") == 0
  arch = str(tmp_path / "s" / "architecture.json")
  reports = []
  for name, sets in (("resident", []), ("host", ["--set", "data.resident_mb=0"])):
    assert cli.main(["retrain", arch, "--workdir", str(tmp_path / name), "--seeds", "2",
                     "--epochs", "2", "--baselines", "", "--no-progress", *sets]) == 0
    reports.append(json.loads((tmp_path / name / "results.json").read_text()))
  rows = [[(r["test_loss"], r["train_loss"]) for r in rep["variants"]["found"]["seeds"]]
          for rep in reports]
  np.testing.assert_allclose(rows[0], rows[1], rtol=1e-5)
