"""One registry for every kind of extension: name -> entry, and where each entry came from.

Candidates (``search.candidates``), backbones (``model.name``), losses (``data.loss``),
datasets (``data.name``) and strategies (``search.strategy``) are each a ``Registry``. An entry
registered while user code loads (``--import FILE``, ``--config FILE``: ``loading``) or
defined outside this package is recorded with that code (``code``), so that a run records what
to pass to rebuild it, and a fresh process without it is refused with one line that says
"pass --import FILE" (``require``) instead of "unknown".

>>> r = Registry("toy", "toy.name")
>>> _ = r.add("one", 1, builtin=True)
>>> r["one"], list(r), r.code("one")
(1, ['one'], None)
>>> r.require("two")
Traceback (most recent call last):
...
actsearch.errors.UserError: toy.name: unknown toy 'two'; known: one
>>> r.require("two", code=["mine.py"])
Traceback (most recent call last):
...
actsearch.errors.UserError: toy.name: toy 'two' is not registered here; ...: pass --import mine.py
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

from actsearch.errors import UserError, comes_from

T = TypeVar("T")
_LOADING: list[str] = []  # the user code being loaded now (``loading``), innermost last


@contextlib.contextmanager
def loading(ref: str) -> Iterator[None]:
  """Entries registered while user code ``ref`` (a file's absolute path or a module's name)
  loads are recorded as coming from it."""
  _LOADING.append(ref)
  try:
    yield
  finally:
    _LOADING.pop()


def current_code() -> str | None:
  """The user code being loaded now (``loading``), if any."""
  return _LOADING[-1] if _LOADING else None


def code_of_definition(obj) -> str | None:
  """Where a registration comes from: the code loading now, else the module that defined
  ``obj`` unless it is this package's own (a built-in)."""
  code = current_code()
  module = getattr(obj, "__module__", None) or ""
  if code is None and module and not module.startswith("actsearch."):
    code = module
  return code


class Registry(Mapping[str, T], Generic[T]):
  """Entries of one kind by name, in registration order (the built-ins first).

  Args:
    kind: what an entry is, for messages (``"loss"``, ``"backbone"``).
    key: the config key that names an entry (``"data.loss"``).
    describe: an entry's one-line documentation for listings (default: its ``doc`` attribute
      or the first line of its docstring).
  """

  def __init__(self, kind: str, key: str, describe: Callable[[T], str] | None = None):
    self.kind, self.key = kind, key
    self._entries: dict[str, T] = {}
    self._code: dict[str, str] = {}
    self._describe = describe

  def add(self, name: str, entry: T, *, builtin: bool = False, code: str | None = None,
          origin=None) -> T:
    """Registers (or replaces) ``name``; returns ``entry``. ``code``: the user code it comes
    from; default: ``code_of_definition(origin or entry)``; ``builtin``: none."""
    if not isinstance(name, str) or not name:
      raise UserError(f"a {self.kind} needs a name (a non-empty string), got {name!r}")
    self._entries[name] = entry
    code = None if builtin else (code or code_of_definition(entry if origin is None
                                                            else origin))
    if code is None:
      self._code.pop(name, None)
    else:
      self._code[name] = code
    return entry

  def remove(self, name: str) -> None:
    """Forgets ``name`` (tests that register their own)."""
    self._entries.pop(name, None)
    self._code.pop(name, None)

  def __getitem__(self, name: str) -> T:
    return self._entries[name]

  def __iter__(self) -> Iterator[str]:
    return iter(self._entries)

  def __len__(self) -> int:
    return len(self._entries)

  def code(self, name: str) -> str | None:
    """The user code that registered ``name`` (None: a built-in or not registered)."""
    return self._code.get(name)

  def require(self, name, code: Sequence[str] = (), where: str | None = None,
              extra: Sequence[str] = ()) -> T:
    """The entry ``name``; else one ``UserError``: "pass --import FILE" where a run recorded
    user code (``code``), else the known names (and ``extra`` names that are valid too)."""
    if isinstance(name, str) and name in self._entries:
      return self._entries[name]
    where = where or self.key
    if code:
      raise UserError(f"{where}: {self.kind} {name!r} is not registered here; it comes from "
                      f"{comes_from(code)}")
    known = [*extra, *self._entries]
    close = difflib.get_close_matches(str(name), known, n=1)
    raise UserError(f"{where}: unknown {self.kind} {name!r}; known: {', '.join(known)}"
                    + (f" (did you mean {close[0]!r}?)" if close else ""))

  def doc(self, name: str) -> str:
    entry = self._entries[name]
    if self._describe is not None:
      return self._describe(entry)
    text = getattr(entry, "doc", None) or getattr(entry, "__doc__", None) or ""
    return text.strip().split("\n")[0] if isinstance(text, str) else ""

  def listing(self) -> list[tuple[str, str, str]]:
    """``(name, where it comes from, doc)`` of every entry: ``built in`` or the user code."""
    return [(n, self._code.get(n) or "built in", self.doc(n)) for n in self._entries]
