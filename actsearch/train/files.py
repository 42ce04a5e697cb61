"""Files written whole or not at all, and JSON read with one clear line on any problem.

Every file a user or a resumed run reads (``config.json``, ``architecture.json``, results,
tables, pictures) goes through a temporary file in the same directory, ``fsync`` and a rename:
a reader, or a run killed mid-write, never sees half a file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from actsearch.errors import UserError
from actsearch.train import hooks


def write_text_atomic(path: str, text: str) -> None:
  """Writes a text file whole or not at all."""
  write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes a file through a temporary file and a rename: readers never see half a file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    hooks.at("export")  # test hook: killed here, ``path`` is untouched
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def copy_tree(src: str, dst: str) -> None:
  """Copies directory ``src`` to ``dst`` through a temporary sibling and renames: ``dst`` is
  the old copy or the new one, whole (a kill between the two renames leaves the old one as
  ``dst.old-*`` beside it)."""
  parent = os.path.dirname(os.path.abspath(dst))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
  try:
    shutil.copytree(src, tmp, dirs_exist_ok=True)
    old = None
    if os.path.exists(dst):
      old = tempfile.mkdtemp(prefix=os.path.basename(dst) + ".old-", dir=parent)
      os.rmdir(old)
      os.replace(dst, old)
    os.replace(tmp, dst)
    if old:
      shutil.rmtree(old)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON whole or not at all."""
  write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str) -> Any:
  """Parsed JSON of a file; a missing, unreadable or malformed file is one ``UserError``."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise UserError(f"file not found: {path}") from None
  except json.JSONDecodeError as e:
    raise UserError(f"{path}: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") \
        from None
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f"{path}: cannot read ({e})") from None
