"""A trained network's weights, out of actsearch: an orbax checkpoint of its NNX state.

The format is Flax's own recipe for NNX checkpoints: ``nnx.to_pure_dict(nnx.state(model,
nnx.Not(nnx.RngState)))`` (every variable of the module but its random streams, nested dicts
of arrays: weights, batch norm's running averages, activation parameters) saved with orbax's
``StandardCheckpointer``. It loads into any module of the same structure::

    abstract = nnx.state(model, nnx.Not(nnx.RngState))
    restored = ocp.StandardCheckpointer().restore(path, nnx.to_pure_dict(abstract))
    nnx.replace_by_pure_dict(abstract, restored)
    nnx.update(model, abstract)

(``load_into`` does this). A retrain writes one per seed of each variant
(``RETRAIN_DIR/VARIANT/weights/seed<s>``); for a user's own model (``models/user.py``) the
state is the user's module's, with the found activations' slots and their parameters, so it
loads into the user's model once the record is applied to it (``actsearch.apply``).
"""

from __future__ import annotations

import os

import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from actsearch.errors import UserError


def member(state, i: int):
  """Member ``i`` of a stacked pytree (numpy arrays)."""
  import jax
  return jax.tree.map(lambda a: np.asarray(a)[i], state)


def _saved(module: nnx.Module):
  """What a weights file holds: every variable but random streams (a dropout layer's key and
  counter, which a training reseeds at every step; they load as the module has them)."""
  return nnx.state(module, nnx.Not(nnx.RngState))


def save(path: str, module: nnx.Module) -> None:
  """Writes ``module``'s state to ``path`` (a directory; replaced if it exists)."""
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.abspath(path), nnx.to_pure_dict(_saved(module)), force=True)
  checkpointer.wait_until_finished()


def load_into(path: str, model: nnx.Module) -> nnx.Module:
  """Restores the state at ``path`` into ``model`` (same structure); returns ``model``."""
  if not os.path.isdir(path):
    raise UserError(f"no weights at {path}")
  abstract = _saved(model)
  try:
    restored = ocp.StandardCheckpointer().restore(os.path.abspath(path),
                                                  nnx.to_pure_dict(abstract))
  except (ValueError, KeyError, FileNotFoundError) as e:
    raise UserError(f"{path}: the weights do not fit this model ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''})") from None
  nnx.replace_by_pure_dict(abstract, restored)
  nnx.update(model, abstract)
  return model
