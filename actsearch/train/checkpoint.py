"""A thin shell over orbax: checkpoints saved atomically (optionally in the background), keyed
by the global step, the newest good one restored.

A checkpoint holds the whole state (weights, alpha, both optimizer states, rng, step) and a
small JSON record (step, epoch, last metrics, skip counters). The data order of an epoch is a
function of (seed, epoch), so the global step is all a resumed run needs to know where it is.

Layout: the state's leaves are packed into one byte array (``pack``) saved as one orbax
item, without OCDBT; the record and the layout that undoes the packing (each leaf's path,
dtype, shape and byte offset) go in the checkpoint's ``custom_metadata``. orbax's cost per
save grows with the number of arrays and items: for the 32 arrays of the default search state
(42 KB) a save cost about 44 ms of CPU as one array per leaf plus a JSON item, and 14 ms as
one array (docs/performance.md, "The loop"). Checkpoints written before this layout (items
``state`` and ``record``) are still restored.

Atomicity is orbax's: a save writes ``<step>.orbax-checkpoint-tmp`` and renames it when
complete; a directory left half-written by a kill is not a checkpoint and is replaced by the
next save of that step. A save that cannot write (disk full, file too large) raises
``WriteError`` and leaves the checkpoints before it as they were.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint._src.path import atomicity

from actsearch.errors import WriteError
from actsearch.train import hooks

_ARMED = [False]  # the ``insave`` test hook, decided when the save began (see ``save``)


class _PausingRename(atomicity.AtomicRenameTemporaryPath):
  """orbax's atomic rename, with the ``insave`` test hook just before the commit."""

  async def finalize(self, *args, **kwargs):
    if _ARMED[0]:
      hooks.pause_here()
    return await super().finalize(*args, **kwargs)


def pack(state: Any) -> tuple[np.ndarray, list[list]]:
  """The leaves of ``state`` as one byte array (each leaf's bytes in leaf order, native byte
  order), and the layout ``[[path, dtype, shape, offset], ...]`` that ``unpack`` reads them
  back with."""
  leaves, layout, offset = [], [], 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    leaf = np.asarray(leaf)
    layout.append([jax.tree_util.keystr(path), leaf.dtype.name, list(leaf.shape), offset])
    leaves.append(leaf.reshape(-1).view(np.uint8))
    offset += leaf.nbytes
  return np.concatenate(leaves) if leaves else np.zeros(0, np.uint8), layout


def unpack(packed: np.ndarray, layout: list[list], template: Any = None) -> Any:
  """The state ``pack`` made: shaped like ``template``, or (None) a dict by leaf path. Raises
  ``ValueError`` if the layout does not fit the template or the bytes."""
  packed = np.asarray(packed, np.uint8)
  leaves = []
  for _, dtype, shape, offset in layout:
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if offset + size > packed.size:
      raise ValueError("the packed state is shorter than its layout")
    leaves.append(packed[offset:offset + size].view(dtype).reshape(shape).copy())
  if template is None:
    return {path: leaf for (path, *_), leaf in zip(layout, leaves)}
  want = jax.tree_util.tree_leaves_with_path(template)
  if [jax.tree_util.keystr(p) for p, _ in want] != [e[0] for e in layout] or any(
      np.shape(t) != leaf.shape or np.asarray(t).dtype != leaf.dtype
      for (_, t), leaf in zip(want, leaves)):
    raise ValueError("the checkpoint holds another state than this run's")
  return jax.tree.unflatten(jax.tree.structure(template), leaves)


class Checkpointer:
  """Checkpoints of a run in ``directory``; keeps the newest ``max_to_keep``. With
  ``asynchronous``, ``save`` returns once the state is on the host and orbax writes it in a
  background thread; the next save, ``wait`` and ``close`` wait for it (and raise its
  error)."""

  def __init__(self, directory: str, max_to_keep: int = 2, read_only: bool = False,
               asynchronous: bool = False):
    self.directory = os.path.abspath(directory)
    if not read_only:
      try:
        os.makedirs(self.directory, exist_ok=True)
      except OSError as e:
        raise WriteError(f"cannot create {self.directory} ({e.strerror})") from None
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=False, read_only=read_only,
        enable_async_checkpointing=asynchronous,
        temporary_path_class=_PausingRename if hooks.wants("insave") else None,
        # Every process keeps its own manager and only the primary one writes: the
        # processes of a multi-host search hold identical replicas of the state.
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            primary_host=jax.process_index(), active_processes={jax.process_index()}))
    self._options = options
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers=ocp.StandardCheckpointHandler(use_ocdbt=False))
    self._legacy = None  # a manager for checkpoints in the layout before ``pack``
    self._read_only = read_only
    self._pending: int | None = None  # the step a background save is writing

  def latest(self) -> int | None:
    """The key (global step; epoch in runs made before step keys) of the newest checkpoint."""
    return self._manager.latest_step()

  def _failed(self, step: int | None, e: BaseException) -> WriteError:
    kept = [s for s in self._manager.all_steps() if step is None or s < step]
    where = f"checkpoint {step}" if step is not None else "a checkpoint"
    detail = getattr(e, "strerror", None)
    if detail is None:  # tensorstore names the OS error by its code
      code = re.search(r"os_error_code='?(\d+)", str(e))
      detail = os.strerror(int(code.group(1))) if code else str(e).splitlines()[-1][-160:]
    return WriteError(f"could not save {where} in {self.directory} ({detail}); "
                      + (f"checkpoint {max(kept)} is kept" if kept else "no checkpoint is kept"))

  def save(self, step: int, state: Any, record: dict, pause_inside: bool | None = None) -> None:
    """Saves ``state`` and ``record`` as checkpoint ``step``. ``pause_inside``: whether the
    ``insave`` test hook pauses inside this save (None: whether it is armed now)."""
    self.wait()  # the save before (in the background) first: its error names its step
    packed, layout = pack(state)
    self._pending = step
    # A save commits after the loop has run on (it is written while the next stretch runs,
    # and in the background it commits later still): whether the test hook pauses inside it
    # is decided by the step count when its stretch ended, not when it commits.
    _ARMED[0] = hooks.armed("insave") if pause_inside is None else pause_inside
    try:
      self._manager.save(step, args=ocp.args.StandardSave({"state": packed}),
                         custom_metadata={"record": record, "layout": layout})
    except Exception as e:  # noqa: BLE001 - tensorstore and orbax raise many kinds
      raise self._failed(step, e) from None

  def wait(self) -> None:
    """Waits for a background save; raises ``WriteError`` if it failed."""
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      raise self._failed(self._pending, e) from None
    self._pending = None

  def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict]:
    """The state (shaped like ``template``; None: as saved) and record of ``step`` (default:
    newest)."""
    step = self.latest() if step is None else step
    if os.path.isdir(os.path.join(self.directory, str(step), "state")):
      return self._restore_legacy(template, step)
    meta = self._manager.metadata(step).custom_metadata
    packed = self._manager.restore(step, args=ocp.args.StandardRestore())
    return unpack(packed["state"], meta["layout"], template), meta["record"]

  def _restore_legacy(self, template: Any, step: int) -> tuple[Any, dict]:
    """A checkpoint of items ``state`` (a pytree as is) and ``record`` (JSON)."""
    if self._legacy is None:
      self._legacy = ocp.CheckpointManager(self.directory, options=self._options)
    abstract = None if template is None else jax.tree.map(
        ocp.utils.to_shape_dtype_struct, jax.tree.map(np.asarray, template))
    out = self._legacy.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))
    return out.state, out.record

  def restore_newest_good(self, template: Any) -> tuple[Any, dict] | None:
    """The newest checkpoint that restores, or None if there is none. A damaged newer one
    (truncated or corrupted files) is reported in one warning line and, where this manager
    writes, deleted, so that the run can save that step again."""
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        return self.restore(template, step)
      except Exception as e:  # noqa: BLE001 - whatever orbax or the files raise
        print(f"actsearch: warning: checkpoint {step} in {self.directory} is damaged "
              f"({type(e).__name__}); falling back to the one before", file=sys.stderr)
        if not self._read_only:
          self._manager.delete(step)
    return None

  def close(self) -> None:
    if self._legacy is not None:
      self._legacy.close()
    try:
      self._manager.close()
    except Exception as e:  # noqa: BLE001
      raise self._failed(self._pending, e) from None
