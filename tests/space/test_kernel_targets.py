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


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_kernel_tests_pass_for_an_explicit_target(target, monkeypatch):
  wide, needs = TARGETS[target]
  if not needs <= set(kernels.cpu()["isa"]):
    pytest.skip(f"this CPU cannot run {target} code")
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
