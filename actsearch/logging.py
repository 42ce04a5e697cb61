"""A thin shell over tensorboardX, with a JSON line per step beside the event files."""

from __future__ import annotations

import json
import math
import os

from tensorboardX import SummaryWriter


class RunLogger:
  """Scalars to TensorBoard event files and to ``metrics.jsonl`` in the workdir."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    if enabled:
      self._writer = SummaryWriter(logdir=workdir, flush_secs=30)
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")

  @property
  def writer(self) -> SummaryWriter | None:
    """The event writer (images, layouts), or None where this process does not log."""
    return self._writer if self.enabled else None

  def scalars(self, step: int, values: dict[str, float]) -> None:
    if not self.enabled:
      return
    for tag, value in values.items():
      self._writer.add_scalar(tag, float(value), global_step=step)
    record = {"step": step, **{k: (float(v) if math.isfinite(float(v)) else str(float(v)))
                                for k, v in values.items()}}
    self._jsonl.write(json.dumps(record) + "\n")

  def flush(self) -> None:
    if self.enabled:
      self._writer.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self._writer.close()
      self._jsonl.close()


class SeedLoggers:
  """One ``RunLogger`` per member of a run that trains several networks together (seeds,
  or shortlisted architectures), in ``DIR/NAME``: each scalar holds one value per member, and
  TensorBoard shows each member as a run of its own."""

  def __init__(self, directory: str, names: list[str], enabled: bool = True):
    self._loggers = []
    for name in names:
      path = os.path.join(directory, name)
      if enabled:
        os.makedirs(path, exist_ok=True)
      self._loggers.append(RunLogger(path, enabled))

  def scalars(self, step: int, values: dict) -> None:
    for i, logger in enumerate(self._loggers):
      logger.scalars(step, {k: _pick(v, i) for k, v in values.items()})

  def flush(self) -> None:
    for logger in self._loggers:
      logger.flush()

  def close(self) -> None:
    for logger in self._loggers:
      logger.close()


def _pick(value, i: int) -> float:
  """Seed ``i``'s entry of a per-seed value (a shared scalar, such as the lr, is everyone's)."""
  import numpy as np
  arr = np.asarray(value)
  return float(arr if arr.ndim == 0 else arr[i])
