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
