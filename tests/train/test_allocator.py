"""The allocator tuning: a large buffer freed and allocated again is not page-faulted again."""

import os
import subprocess
import sys

import pytest

from actsearch.train import allocator

_PROBE = """
import ctypes, resource
from actsearch.train import allocator
print(allocator.keep_freed_memory())
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
n = 48 * 2 ** 20  # above glibc's largest mmap threshold (32 MiB)

def touch():  # what XLA does with a step's temporaries: malloc, write, free
  p = libc.malloc(n)
  ctypes.memset(p, 1, n)
  libc.free(p)

touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(env_value):
  env = {**os.environ, allocator.ENV: env_value}
  out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                       check=True).stdout.split()
  return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffer_is_reused_without_page_faults():
  pages = 48 * 2 ** 20 // 4096
  tuned, faults = _probe("1")
  assert tuned
  assert faults < pages // 10
  untuned, faults = _probe("0")  # glibc's default: munmap on free, fault again on reuse
  assert not untuned
  if "[always]" not in _read("/sys/kernel/mm/transparent_hugepage/enabled"):
    assert faults > pages // 2  # (with transparent huge pages always on, 2 MiB per fault)


def _read(path):
  try:
    with open(path) as f:
      return f.read()
  except OSError:
    return ""


def test_cli_tunes_for_search_and_bench(monkeypatch):
  from actsearch import cli

  calls = []
  monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
  monkeypatch.setitem(cli.COMMANDS, "bench", lambda args: None)
  monkeypatch.setitem(cli.COMMANDS, "candidates", lambda args: None)
  assert cli.main(["candidates"]) == 0 and not calls
  assert cli.main(["bench"]) == 0 and calls == [1]
