"""A thin shell over tensorboardX, with a JSON line per step beside the event files."""

from __future__ import annotations

import itertools
import json
import math
import os

from tensorboardX import SummaryWriter as _QueuedSummaryWriter
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.writer import FileWriter

_WRITERS = itertools.count()


class _EventFile:
  """An event file written as the events come. tensorboardX's own writer queues events for a
  writer thread, and its ``flush()`` does not drain that queue: a process killed after
  ``flush()`` loses the events still queued, although the checkpoint after them was saved.
  Writing directly (a buffered file, flushed by ``flush()``) is also cheaper than the queue."""

  def __init__(self, logdir: str, filename_suffix: str):
    self._logdir = logdir
    self._file = EventsWriter(os.path.join(logdir, "events"), filename_suffix)
    self._closed = False

  def get_logdir(self) -> str:
    return self._logdir

  def add_event(self, event) -> None:
    if not self._closed:
      self._file.write_event(event)

  def flush(self) -> None:
    if not self._closed:
      self._file.flush()

  def close(self) -> None:
    if not self._closed:
      self._file.flush()
      self._file.close()
      self._closed = True

  def reopen(self) -> None:
    pass


class _DirectFileWriter(FileWriter):
  def __init__(self, logdir, max_queue=10, flush_secs=120, filename_suffix=""):  # noqa: ARG002
    self.event_writer = _EventFile(str(logdir), filename_suffix)
    self._default_metadata = {}


class SummaryWriter(_QueuedSummaryWriter):
  """tensorboardX's ``SummaryWriter`` over ``_EventFile``: what ``flush()`` returns from is on
  disk."""

  def _get_file_writer(self):
    if self.all_writers is None or self.file_writer is None:
      self.file_writer = _DirectFileWriter(self.logdir, filename_suffix=self._filename_suffix)
      if self.purge_step is not None:  # as tensorboardX marks a purge
        self.file_writer.add_event(Event(step=self.purge_step, file_version="brain.Event:2"))
        self.file_writer.add_event(
            Event(step=self.purge_step, session_log=SessionLog(status=SessionLog.START)))
      self.all_writers = {self.file_writer.get_logdir(): self.file_writer}
    return self.file_writer


class RunLogger:
  """Scalars to TensorBoard event files and to ``metrics.jsonl`` in the workdir.

  A resumed run calls ``resume_at(step)`` before it logs: steps after ``step`` (logged by a run
  that was killed before its next checkpoint) are dropped from ``metrics.jsonl``, and the new
  event file carries TensorBoard's purge marker (``purge_step``), so that no step appears
  twice. The files open on first use, so that the marker is in place before anything is
  written.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.workdir = workdir
    self._purge_step: int | None = None
    self._writer: SummaryWriter | None = None
    self._jsonl = None
    self._at_open: list = []

  def at_open(self, fn) -> None:
    """Calls ``fn(writer)`` once the event file is open (at once if it is)."""
    if self._writer is not None:
      fn(self._writer)
    elif self.enabled:
      self._at_open.append(fn)

  def resume_at(self, step: int) -> None:
    """Forgets what was logged after ``step``; call before the first record."""
    path = os.path.join(self.workdir, "metrics.jsonl")
    if not self.enabled or not os.path.exists(path):  # a fresh workdir: nothing to forget
      return
    self._purge_step = step + 1
    with open(path, encoding="utf-8") as f:
      lines = f.readlines()
    kept = [line for line in lines if _step_of(line) <= step]
    if len(kept) != len(lines):
      from actsearch.train.files import write_text_atomic
      write_text_atomic(path, "".join(kept))

  @property
  def writer(self) -> SummaryWriter | None:
    """The event writer (images, layouts), or None where this process does not log."""
    if not self.enabled:
      return None
    if self._writer is None:
      # tensorboardX names an event file by the second it opened and the host: two writers
      # of one directory within a second would share (and clobber) a file without a suffix.
      self._writer = SummaryWriter(logdir=self.workdir, flush_secs=30,
                                   purge_step=self._purge_step,
                                   filename_suffix=f".{os.getpid()}.{next(_WRITERS)}")
      for fn in self._at_open:
        fn(self._writer)
      self._at_open = []
    return self._writer

  def scalars(self, step: int, values: dict[str, float]) -> None:
    if not self.enabled:
      return
    # One event per step with every tag (tensorboardX's add_scalar writes one per tag).
    summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))
                             for tag, value in values.items()])
    self.writer.file_writer.add_summary(summary, global_step=step)
    if self._jsonl is None:
      self._jsonl = open(os.path.join(self.workdir, "metrics.jsonl"), "a", encoding="utf-8")
    record = {"step": step, **{k: (float(v) if math.isfinite(float(v)) else str(float(v)))
                                for k, v in values.items()}}
    self._jsonl.write(json.dumps(record) + "\n")

  def flush(self) -> None:
    for f in (self._writer, self._jsonl):
      if f is not None:
        f.flush()

  def close(self) -> None:
    for f in (self._writer, self._jsonl):
      if f is not None:
        f.close()
    self._writer = self._jsonl = None


def _step_of(line: str) -> float:
  """The step of a ``metrics.jsonl`` line; a torn last line (a kill mid-write) counts as
  after every step, so it is dropped."""
  try:
    return float(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return float("inf")


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

  def resume_at(self, step: int) -> None:
    for logger in self._loggers:
      logger.resume_at(step)

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
