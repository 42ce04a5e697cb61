"""The one error type that means "the user gave bad input" (exit code 2)."""


class UserError(ValueError):
  """Bad input: unknown candidate, malformed config, JSON or data file, wrong shapes.

  The CLI prints ``str(error)`` as one line on stderr and exits with code 2.
  """


class WriteError(OSError):
  """A file the run must write could not be written (disk full, file too large, read-only or
  missing place). The CLI prints one line and exits with code 1; what was saved before stays
  usable."""
