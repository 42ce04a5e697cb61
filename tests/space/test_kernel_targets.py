"""The kernel's tests for the code paths of older instruction sets: every rule against the plain
sum (values, gradients, second derivatives) and every pass against the XLA code, with the
kernel built for an explicit ``-march`` target (``ACTSEARCH_KERNEL_MARCH``) as on the machines
that have only that instruction set. Slow tier: each target builds the kernel anew and runs
the two test modules in a fresh process."""

import os
import platform
import re
import shutil
import subprocess
import sys

import pytest

from actsearch import cache
from actsearch.space import kernels

from conftest import ROOT

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 targets"),
              pytest.mark.skipif(not kernels.available(), reason="no kernel can be built here")]

# target -> (whether its code may use 256-bit registers, the CPU flags it needs)
TARGETS = {"x86-64-v3": (True, {"avx2", "fma"}), "x86-64-v2": (False, {"sse4_2"})}


def _vector_isa(march: str) -> set[str]:
  """The vector float extensions the compiler enables for ``-march`` (AVX, AVX2, AVX-512*,
  FMA, F16C and the SSE levels): what the kernel's auto-vectorised loops are compiled with."""
  out = subprocess.run([kernels._compiler(), f"-march={march}", "-dM", "-E", "-"], input="",
                       capture_output=True, text=True, check=True).stdout
  return set(re.findall(r"#define (__(?:AVX\w*|FMA|F16C|SSE\d\w*|SSE)__) ", out)) - {
      "__SSE4A__"}  # AMD's bit-field instructions: no vector float code


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_kernel_tests_pass_for_an_explicit_target(target, monkeypatch):
  wide, needs = TARGETS[target]
  if not needs <= set(kernels.cpu()["isa"]):
    pytest.skip(f"this CPU cannot run {target} code")
  if _vector_isa(target) == _vector_isa("native"):
    pytest.skip(f"the native build has {target}'s vector extensions here (no AVX-512): the "
                "fast tier runs these tests on it")
  env = {**os.environ, kernels.MARCH_ENV: target, "ACTSEARCH_KERNELS": "1"}
  proc = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
       "tests/space/test_kernels.py", "tests/space/test_fused.py"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
  summary = proc.stdout.strip().splitlines()[-1]
  assert proc.returncode == 0, proc.stdout[-3000:]
  assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary
  # The library those tests loaded is the target's: no 256-bit registers below v3.
  monkeypatch.setenv(kernels.MARCH_ENV, target)
  library = cache.find(kernels._library_name(kernels._compiler()))
  assert library is not None
  objdump = shutil.which("objdump")
  if objdump:
    text = subprocess.run([objdump, "-d", str(library)], capture_output=True, text=True).stdout
    assert ("%ymm" in text) == wide
