"""The checkpoint layout: the state packed into one byte array and read back exactly, for
every kind of leaf a state holds; checkpoints of the layout before it still restore."""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from actsearch.train.checkpoint import Checkpointer, pack, unpack

LEAVES = {
    "float32 matrix": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    "float32 scalar": np.float32(0.25),
    "int32 step": np.asarray(17, np.int32),
    "uint32 key data": np.asarray([1, 2 ** 32 - 1], np.uint32),
    "bfloat16": jnp.asarray([1.5, -2.0], jnp.bfloat16),
    "float64": np.asarray([np.pi]),
    "bool": np.asarray([True, False]),
    "empty": np.zeros((0, 3), np.float32),
}


@pytest.mark.parametrize("name", list(LEAVES))
def test_every_kind_of_leaf_comes_back_bit_for_bit(name):
  state = {"a": {"leaf": LEAVES[name]}, "b": [np.float32(1.0), LEAVES[name]]}
  packed, layout = pack(state)
  assert packed.dtype == np.uint8 and packed.ndim == 1
  back = unpack(packed, layout, state)
  for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(back)):
    assert np.asarray(x).dtype == y.dtype and np.shape(x) == y.shape
    assert np.asarray(x).tobytes() == y.tobytes()
  as_saved = unpack(packed, layout)  # no template: by leaf path
  assert list(as_saved) == [entry[0] for entry in layout]


def test_a_layout_that_does_not_fit_the_template_is_refused():
  packed, layout = pack({"w": np.zeros(3, np.float32)})
  with pytest.raises(ValueError, match="another state"):
    unpack(packed, layout, {"w": np.zeros(4, np.float32)})
  with pytest.raises(ValueError, match="another state"):
    unpack(packed, layout, {"v": np.zeros(3, np.float32)})
  with pytest.raises(ValueError, match="shorter"):
    unpack(packed[:-1], layout)


def test_a_checkpoint_round_trips_with_its_record(tmp_path):
  state = {"w": np.arange(6, dtype=np.float32), "step": np.asarray(3, np.int32)}
  ckpt = Checkpointer(str(tmp_path))
  ckpt.save(3, state, {"step": 3, "metrics": {"val_loss": 0.5}})
  ckpt.close()
  got, record = Checkpointer(str(tmp_path), read_only=True).restore(state)
  assert record == {"step": 3, "metrics": {"val_loss": 0.5}}
  np.testing.assert_array_equal(got["w"], state["w"])
  assert int(got["step"]) == 3


def test_a_checkpoint_of_the_layout_before_packing_still_restores(tmp_path):
  """Runs begun before the packed layout saved items ``state`` and ``record``."""
  state = {"w": np.arange(6, dtype=np.float32), "step": np.asarray(3, np.int32)}
  old = ocp.CheckpointManager(str(tmp_path), options=ocp.CheckpointManagerOptions(create=True))
  old.save(10, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                       record=ocp.args.JsonSave({"epoch": 1})))
  old.wait_until_finished()
  old.close()
  ckpt = Checkpointer(str(tmp_path))
  got, record = ckpt.restore(state)
  assert record == {"epoch": 1}
  np.testing.assert_array_equal(got["w"], state["w"])
  ckpt.save(20, got, {"step": 20})  # and the run goes on in the new layout
  assert ckpt.latest() == 20
  ckpt.close()
  assert Checkpointer(str(tmp_path), read_only=True).restore(state)[1] == {"step": 20}
