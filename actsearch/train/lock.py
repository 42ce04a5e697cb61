"""One run per workdir: an OS lock (``fcntl.flock``) on ``WORKDIR/.lock``.

The lock belongs to the open file, so the kernel releases it when the holder dies, however it
dies (SIGKILL included): a lock left by a killed run never blocks the resume. The file holds
the holder's pid, host and command, so that a refused run can name it. In a multi-host run
only process 0 takes it (the others only read the workdir).
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys

from actsearch.errors import UserError

LOCK_NAME = ".lock"


class WorkdirLock:
  """``with WorkdirLock(workdir):`` holds the workdir for the block, or raises ``UserError``
  naming the live holder."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.path = os.path.join(workdir, LOCK_NAME)
    self.enabled = enabled
    self._fd: int | None = None

  def __enter__(self) -> WorkdirLock:
    if not self.enabled:
      return self
    try:
      os.makedirs(os.path.dirname(self.path), exist_ok=True)
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise UserError(f"cannot use {os.path.dirname(self.path)} as a workdir ({e.strerror})") \
          from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      try:
        holder = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip() or "unknown process"
      finally:
        os.close(fd)
      raise UserError(f"{os.path.dirname(self.path)} is held by a live run ({holder}); "
                      "wait for it to finish or use another --workdir") from None
    os.ftruncate(fd, 0)
    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}: {command}\n".encode(), 0)
    self._fd = fd
    return self

  def __exit__(self, *exc) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None
