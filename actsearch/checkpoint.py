"""A thin shell over orbax: one checkpoint per epoch, saved atomically, the newest restored.

A checkpoint holds the whole ``SearchState`` (weights, alpha, both optimizer states, rng,
step) and a small JSON record (epoch, last metrics). The data order of an epoch is a
function of (seed, epoch), so the epoch number is all a resumed run needs of it.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
  """Checkpoints of a run in ``directory``; keeps the newest ``max_to_keep``."""

  def __init__(self, directory: str, max_to_keep: int = 2, read_only: bool = False):
    self.directory = os.path.abspath(directory)
    if not read_only:
      os.makedirs(self.directory, exist_ok=True)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=False, read_only=read_only,
        enable_async_checkpointing=False,
        # Every process keeps its own manager and only the primary one writes: the
        # processes of a multi-host search hold identical replicas of the state.
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            primary_host=jax.process_index(), active_processes={jax.process_index()}))
    self._manager = ocp.CheckpointManager(self.directory, options=options)
    self._read_only = read_only

  def latest_epoch(self) -> int | None:
    return self._manager.latest_step()

  def save(self, epoch: int, state: Any, record: dict) -> None:
    state = jax.tree.map(np.asarray, state)
    self._manager.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)))
    self._manager.wait_until_finished()

  def restore(self, template: Any, epoch: int | None = None) -> tuple[Any, dict]:
    """The state (shaped like ``template``) and record of ``epoch`` (default: newest)."""
    epoch = self.latest_epoch() if epoch is None else epoch
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, jax.tree.map(np.asarray, template))
    out = self._manager.restore(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))
    return out.state, out.record

  def restore_newest_good(self, template: Any) -> tuple[Any, dict] | None:
    """The newest checkpoint that restores, or None if there is none. A damaged newer one
    (truncated or corrupted files) is reported in one warning line and, where this manager
    writes, deleted, so that the run can save that epoch again."""
    import sys
    for epoch in sorted(self._manager.all_steps(), reverse=True):
      try:
        return self.restore(template, epoch)
      except Exception as e:  # noqa: BLE001 - whatever orbax or the files raise
        print(f"actsearch: warning: checkpoint {epoch} in {self.directory} is damaged "
              f"({type(e).__name__}); falling back to the one before", file=sys.stderr)
        if not self._read_only:
          self._manager.delete(epoch)
    return None

  def close(self) -> None:
    self._manager.close()
