"""The one error type that means "the user gave bad input" (exit code 2), and the mark on an
exception that the user's own code raised."""

import contextlib


class UserError(ValueError):
  """Bad input: unknown candidate, malformed config, JSON or data file, wrong shapes.

  The CLI prints ``str(error)`` as one line on stderr and exits with code 2.
  """


class WriteError(OSError):
  """A file the run must write could not be written (disk full, file too large, read-only or
  missing place). The CLI prints one line and exits with code 1; what was saved before stays
  usable."""


def comes_from(code) -> str:
  """``a.py, mod: pass --import a.py --import mod``: the user code a run recorded for a name
  that is not registered here, and the flags that load it (the tail of every such line)."""
  return f"{', '.join(code)}: pass " + " ".join(f"--import {c}" for c in code)


USER_CODE = "actsearch_user_code"  # the attribute that marks an exception of the user's code


@contextlib.contextmanager
def their_code(what: str):
  """Marks an exception raised by the user's own code inside (``what``: which code, e.g.
  "the factory of model 'own_cnn'"): it propagates unchanged, with a note saying so; the CLI
  prints its traceback, which is the user's bug, then one line, and exits with code 2."""
  try:
    yield
  except UserError:
    raise
  except Exception as e:  # noqa: BLE001 - re-raised as it is
    setattr(e, USER_CODE, what)
    e.add_note(f"actsearch: raised in your code ({what})")
    raise
