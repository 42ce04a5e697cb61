"""Keep freed memory in the process, so a step does not page-fault its temporaries again.

XLA:CPU allocates a compiled step's temporary buffer (tens of MiB for a second-order search
step) with ``malloc`` on every call and frees it afterwards. glibc serves a request above its
mmap threshold (at most 32 MiB) with a fresh ``mmap`` and gives it back with ``munmap`` on
``free``, so the kernel zero-fills every page of it again on the next step: one page fault
per 4 KiB, on the critical path (measured here: 12,000 faults per exact second-order step of
the reference MLP, about a tenth of its time).

``keep_freed_memory`` sets, through ``mallopt``:

* ``M_MMAP_MAX = 0``: no ``mmap`` for large requests; they come from malloc's heaps (glibc
  still maps a request that no heap can hold, above 64 MiB in a thread's arena);
* ``M_TRIM_THRESHOLD = 2 GiB``: freed memory stays in the heaps, up to that much, instead of
  going back to the kernel.

The price is that the process keeps its peak heap while it runs, which a training process
does anyway. The CLI calls this for ``search`` and ``bench``; a library user may call it, or
not. ``ACTSEARCH_KEEP_FREED_MEMORY=0`` turns it off. It does nothing outside glibc.

``fewer_copies`` adds ``--xla_cpu_copy_insertion_use_region_analysis=true`` to ``XLA_FLAGS``:
XLA:CPU's default copy insertion copies every donated weight matrix that two passes of a
search step read (the val pass and the train pass); its region analysis proves the reads
come first and drops the copies (27 -> 19 MiB of temporaries for the reference MLP step).
XLA reads the flag when JAX's backend starts, so it takes effect only before that. The CLI
calls it for the commands that compile steps; importing actsearch does not (a library user
sets ``XLA_FLAGS`` in their own program, or calls this first).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2 ** 31 - 1  # mallopt takes an int: 2 GiB
ENV = "ACTSEARCH_KEEP_FREED_MEMORY"
COPY_FLAG = "--xla_cpu_copy_insertion_use_region_analysis=true"


def keep_freed_memory() -> bool:
  """Tune glibc's malloc as above; whether it took effect."""
  if os.environ.get(ENV, "1") == "0":
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt, ...)
    return False
  mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
  return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def fewer_copies(environ=os.environ) -> None:
  """Adds ``COPY_FLAG`` to ``XLA_FLAGS`` in ``environ`` unless that names the option already."""
  flags = environ.get("XLA_FLAGS", "")
  if COPY_FLAG.split("=")[0] not in flags:
    environ["XLA_FLAGS"] = f"{flags} {COPY_FLAG}".strip()
