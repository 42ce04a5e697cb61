"""Test hooks: a process stops at a moment a test names, so that the test kills it there.

Killing a run after a guessed delay tests whatever moment the machine's load picks. Instead,
with ``ACTSEARCH_PAUSE_AT_STEP=N:FILE[:WHERE]`` in the environment, the process writes FILE
when it reaches the moment and waits until it is killed. Steps are counted over every loop
the process runs (a retrain's variants follow each other). WHERE is one of

* ``step`` (default): after the N-th step of this process has finished on the device;
* ``save``: before the checkpoint of the first stretch that ends once step N is taken (that
  stretch's logs are written; the loop writes it while the next stretch runs);
* ``insave``: inside that checkpoint's save, when its files are written but not committed
  (orbax's rename of the temporary directory);
* ``export``: inside the first whole-file write after step N (``architecture.json``,
  ``result.json``, tables, plots), when the temporary file is written but not renamed.

Without the variable every hook is a no-op.
"""

from __future__ import annotations

import os
import time

PAUSE_ENV = "ACTSEARCH_PAUSE_AT_STEP"
WHERE = ("step", "save", "insave", "export")
_steps = [0]  # steps taken by every loop of this process


def _spec() -> tuple[int, str, str] | None:
  spec = os.environ.get(PAUSE_ENV)
  if not spec:
    return None
  step, path, *where = spec.split(":")
  where = where[0] if where else "step"
  if where not in WHERE:
    raise ValueError(f"{PAUSE_ENV}: unknown moment {where!r}; known: {', '.join(WHERE)}")
  return int(step), path, where


def wants(where: str) -> bool:
  """Whether this process is set to pause at ``where`` (so callers can prepare for it)."""
  spec = _spec()
  return spec is not None and spec[2] == where


def _pause(path: str) -> None:
  with open(path, "w", encoding="utf-8") as f:
    f.write("paused\n")
  while True:  # until the test kills the process
    time.sleep(1)


def step_taken(block=None, before_pause=None) -> None:
  """Counts one step; pauses after step N (``block`` is waited for first: the step's
  result, so that the step has really run; then ``before_pause``: a background checkpoint
  save, so that the moment is the same whatever the machine's speed)."""
  _steps[0] += 1
  spec = _spec()
  if spec is not None and spec[2] == "step" and _steps[0] == spec[0]:
    if block is not None:
      import jax
      jax.block_until_ready(block)
    if before_pause is not None:
      before_pause()
    _pause(spec[1])


def armed(where: str) -> bool:
  """Whether the process is to pause at ``where`` now (step N has been taken)."""
  spec = _spec()
  return spec is not None and spec[2] == where and _steps[0] >= spec[0]


def pause_here() -> None:
  """Pauses unconditionally (a caller that checked ``armed`` earlier)."""
  _pause(_spec()[1])


def at(where: str, before_pause=None) -> None:
  """Pauses at ``where`` once step N has been taken (after ``before_pause``)."""
  spec = _spec()
  if spec is not None and spec[2] == where and _steps[0] >= spec[0]:
    if before_pause is not None:
      before_pause()
    _pause(spec[1])
