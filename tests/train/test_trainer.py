"""The shared trainer: members trained together, runs keyed by what they train."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from actsearch import configs, models
from actsearch.errors import UserError
from actsearch.train import trainer
from actsearch.train.objective import Objective


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 6)).astype(np.float32)
  return x, np.argmax(x[:, :3], axis=1).astype(np.int64)


def _members(candidate, seeds=(0, 1)):
  cfg = configs.base_config()
  cfg.model.widths = [8]
  built = [models.build(cfg.model, (6,), 3, models.uniform_slots(candidate), nnx.Rngs(params=s))
           for s in seeds]
  graphdef, state = trainer.stack_models(built)
  return Objective(graphdef, "classification"), state


def _recipe():
  r = configs.base_config().retrain
  r.epochs, r.batch_size = 2, 50
  return r


def _fit(workdir, candidate, **kw):
  objective, state = _members(candidate)
  x, y = _data()
  state, _ = trainer.fit(_recipe(), objective, state, x, y, str(workdir), [0, 1],
                         ["seed0", "seed1"], progress=False, **kw)
  return objective, state


def _leaves(state):
  return [np.asarray(v) for v in jax.tree.leaves(state.params)]


def test_two_calls_in_one_workdir_keep_their_own_results(tmp_path):
  _, relu = _fit(tmp_path / "shared", "relu")
  _, tanh = _fit(tmp_path / "shared", "tanh")
  _, tanh_alone = _fit(tmp_path / "alone", "tanh")
  # the second call trained its own members from scratch, not the first call's finished state
  for a, b in zip(_leaves(tanh), _leaves(tanh_alone)):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(_leaves(relu), _leaves(tanh)))
  assert len([d for d in os.listdir(tmp_path / "shared")]) == 2  # one run directory each
  # the first call again: its finished run is found and returned, not trained again
  _, again = _fit(tmp_path / "shared", "relu")
  for a, b in zip(_leaves(relu), _leaves(again)):
    np.testing.assert_array_equal(a, b)
  assert int(again.step[0]) == 2 * (200 // 50)


def test_a_named_run_directory_refuses_other_members(tmp_path):
  _fit(tmp_path, "relu", key="variant")
  record = json.loads((tmp_path / "variant" / trainer.MEMBERS_FILE).read_text())
  assert record["names"] == ["seed0", "seed1"] and record["seeds"] == [0, 1]
  with pytest.raises(UserError, match="other networks"):
    _fit(tmp_path, "tanh", key="variant")


def test_the_fingerprint_ignores_how_a_run_goes_but_not_what_it_trains():
  x, y = _data()
  obj, state = _members("relu")
  fp = lambda r, o, s, x, seeds: trainer.fingerprint(r, o, s, x, y, seeds, ["a", "b"])
  base = fp(_recipe(), obj, state, x, [0, 1])
  r = _recipe()
  r.checkpoint_every, r.eval_batch_size, r.async_checkpoints = 3, 7, True
  assert fp(r, obj, state, x, [0, 1]) == base
  r.lr = 0.5
  assert fp(r, obj, state, x, [0, 1]) != base
  assert fp(_recipe(), obj, state, x, [1, 0]) != base
  assert fp(_recipe(), obj, state, x[::-1], [0, 1]) != base
  other_obj, other = _members("relu", seeds=(0, 2))
  assert fp(_recipe(), other_obj, other, x, [0, 1]) != base
  # same weights, another activation: only the structure tells them apart
  tanh_obj, tanh = _members("tanh")
  assert fp(_recipe(), tanh_obj, tanh, x, [0, 1])["state"] == base["state"]
  assert fp(_recipe(), tanh_obj, tanh, x, [0, 1]) != base
