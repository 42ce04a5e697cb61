"""A non-editable install carries everything the package needs: the kernel's C++ sources are
package data of ``actsearch.space.kernels`` (an editable install, which reads the checkout,
would hide a missing entry)."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

PROBE = """
import actsearch, sys
from actsearch.space import kernels
from actsearch import activations, checkpoint, configs, mixed, models
assert actsearch.__file__.startswith(sys.argv[1]), actsearch.__file__
assert mixed.MixedActivation and activations.register and checkpoint.unpack
assert configs.base_config().search.strategy == "darts" and models.register
print("kernel", kernels.available())
"""


@pytest.mark.slow  # builds and installs a wheel (14 s)
def test_a_wheel_install_ships_the_kernel_sources_and_the_old_import_paths(tmp_path):
  source = tmp_path / "source"  # a copy: building in the checkout would leave build/ there
  source.mkdir()
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(os.path.join(ROOT, name), source / name)
  shutil.copytree(os.path.join(ROOT, "actsearch"), source / "actsearch",
                  ignore=shutil.ignore_patterns("__pycache__"))
  site = tmp_path / "site"
  build = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                          "--target", str(site), str(source)], capture_output=True, text=True,
                         timeout=600)
  assert build.returncode == 0, build.stderr
  kernel_dir = site / "actsearch" / "space" / "kernels"
  assert {"mixture.cc", "mixture_core.h", "__init__.py"} <= set(os.listdir(kernel_dir))
  for name in ("mixture.cc", "mixture_core.h"):  # the very sources the checkout builds from
    assert (kernel_dir / name).read_bytes() == (
        source / "actsearch" / "space" / "kernels" / name).read_bytes()
  # The installed package loads the library its sources name (the library's file name hashes
  # the sources, so the one this run's cache holds is theirs) and runs the old import paths.
  env = {**os.environ, "PYTHONPATH": str(site)}
  probe = subprocess.run([sys.executable, "-c", PROBE, str(site)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
  assert probe.returncode == 0, probe.stderr
  if shutil.which(os.environ.get("CXX") or "c++") is None:
    pytest.skip("no C++ compiler here: the kernel cannot be built from the installed sources")
  assert "kernel True" in probe.stdout, probe.stderr
