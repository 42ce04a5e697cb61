"""Where actsearch keeps what it builds or generates once per machine: the CPU kernel of the
mixture (``space/kernels``) and generated datasets (``data``).

``$ACTSEARCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/actsearch``, else ``~/.cache/actsearch``; when
that cannot be written (a read-only home), a per-user temporary directory, used only while it
is this user's alone (it sits in a directory every user can write to).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dirs() -> list[Path]:
  """Where things are looked for and kept, in order: the user's cache directory, then a
  per-user temporary one."""
  if os.environ.get("ACTSEARCH_CACHE_DIR"):
    first = Path(os.environ["ACTSEARCH_CACHE_DIR"])
  else:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    first = Path(base) / "actsearch"
  return [first, Path(tempfile.gettempdir()) / f"actsearch-{os.getuid()}"]


def private(directory: Path) -> bool:
  """Whether a directory is this user's alone: no one else can have put a file there."""
  st = directory.stat()
  return st.st_uid == os.getuid() and not st.st_mode & 0o022


def find(name: str) -> Path | None:
  """The cached file ``name``, if one of the cache directories (the temporary one only while
  private) holds it."""
  first, temporary = cache_dirs()
  if (first / name).exists():
    return first / name
  if temporary.is_dir() and private(temporary) and (temporary / name).exists():
    return temporary / name
  return None


def writable_dir() -> Path:
  """The first cache directory that can be written (made if need be); ``OSError`` naming
  why each could not."""
  first, temporary = cache_dirs()
  unwritable = []
  for directory in (first, temporary):
    try:
      directory.mkdir(mode=0o700, parents=True, exist_ok=True)
      if not os.access(directory, os.W_OK):
        raise PermissionError(f"{directory} is not writable")
      if directory == temporary and not private(directory):
        raise PermissionError(f"{directory} belongs to someone else or is shared")
    except OSError as err:
      unwritable.append(str(err))
      continue
    return directory
  raise OSError("no writable cache directory: " + "; ".join(unwritable))
