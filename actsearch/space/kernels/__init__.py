r"""The CPU kernel of the fused mixed activation: built on first use, loaded through XLA's FFI.

``mixture.cc`` (handlers) and ``mixture_core.h`` (math) are compiled with the machine's C++
compiler (``$CXX``, else ``c++``; ``-O3 -march=native``, or the target that
``$ACTSEARCH_KERNEL_MARCH`` names, e.g. ``x86-64-v2``) against the FFI headers that jaxlib
ships, into actsearch's cache directory (``actsearch/cache.py``: ``$ACTSEARCH_CACHE_DIR``,
else ``$XDG_CACHE_HOME/actsearch``, else ``~/.cache/actsearch``; a per-user temporary directory
if that cannot be written). The
file name hashes the sources, the flags, the compiler's version, jaxlib's version and the CPU
(model and instruction set flags): a change to any of them builds anew, and a cache shared
between machines never loads another CPU's build. The build writes a temporary file and
renames it, so concurrent first uses never load a half-written library.

Without a compiler, or with ``ACTSEARCH_KERNELS=0``, ``available()`` is False and the fused
mixture runs as XLA code instead (one warning says why). The kernel is for CPU float32 only;
which passes use it where it is available is ``space/implementation.py``'s choice.

Passes (``fused`` calls them; the math is in ``mixture_core.h``):

- ``forward``: :math:`y = \sum_k w_k f_k(x)`;
- ``backward``: :math:`\partial L/\partial x = g \sum_k w_k f_k'(x)` and
  :math:`\partial L/\partial w_k = \sum g f_k(x)`; ``dx``: the former alone;
- ``curvature`` and ``dx_curvature``: the VJPs of those two, for exact second-order
  hypergradients.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from actsearch import cache

# Candidate ids of the kernel, in the order of the enum Cand in mixture_core.h.
NAMES = ("identity", "relu", "leaky_relu", "elu", "gelu", "silu", "softplus", "tanh", "sigmoid",
         "sin", "cos", "gaussian", "square", "abs", "relu6", "hard_tanh", "softsign")
IDS = {name: i for i, name in enumerate(NAMES)}

_SOURCES = ("mixture.cc", "mixture_core.h")
# -fno-trapping-math lets the compiler evaluate both sides of a select (x > 0 ? x : e - 1)
# in vector lanes: without it, GCC vectorizes those loops only where the instruction set has
# masked operations (AVX-512), and on AVX2 they ran one element at a time, 7x slower (the
# kernel never reads the floating-point exception flags, so nothing else changes).
# -ffp-contract=fast fuses a * b + c into one FMA where the target has it (ISO C++ mode turns
# that off): the polynomials of exp, sin and cos and the weighted sums run 15-40% faster per
# pass on AVX2, and each fused operation rounds once instead of twice.
_FLAGS = ("-std=c++17", "-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math",
          "-ffp-contract=fast", "-fPIC", "-shared")
MARCH_ENV = "ACTSEARCH_KERNEL_MARCH"  # the compiler's -march target; default native
# pass -> (XLA custom-call target, symbol in mixture.cc, whether its last operand is shaped
# like the weights (a cotangent b), outputs shaped like x, whether a last output holds sums
# over rows, [K, C])
_HANDLERS = {
    "forward": ("actsearch_mix_forward", "ActsearchMixForward", False, 1, False),
    "backward": ("actsearch_mix_backward", "ActsearchMixBackward", False, 1, True),
    "dx": ("actsearch_mix_dx", "ActsearchMixDx", False, 1, False),
    "curvature": ("actsearch_mix_curvature", "ActsearchMixCurvature", True, 2, True),
    "dx_curvature": ("actsearch_mix_dx_curvature", "ActsearchMixDxCurvature", False, 2, True),
}
MAX_COLS = 1024  # the longest row a per-layer slot is cut into


def _compiler() -> str | None:
  cxx = os.environ.get("CXX") or "c++"
  return shutil.which(cxx)


def _cpu_signature() -> str:
  """What ``-march=native`` compiles for: the CPU's model and instruction set flags, so that
  a cache directory shared between different machines never loads a library built for
  another CPU."""
  try:
    with open("/proc/cpuinfo") as f:
      lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features"))]
    return "".join(sorted(set(lines)))
  except OSError:
    return platform.machine() + platform.processor()


def _flags() -> tuple[str, ...]:
  """The compiler flags: ``-march=native``, or the target ``$ACTSEARCH_KERNEL_MARCH`` names
  (``x86-64-v2``, ``x86-64-v3``, ...), so that a machine can build and test the code path of
  an older instruction set."""
  march = os.environ.get(MARCH_ENV, "").strip() or "native"
  if not all(c.isalnum() or c in "-_.+" for c in march):
    raise RuntimeError(f"{MARCH_ENV}={march!r} is not a -march target")
  return (*_FLAGS[:2], f"-march={march}", *_FLAGS[2:])


# Instruction-set flags worth naming in a report (x86 and Arm spellings of /proc/cpuinfo).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
             "amx_tile", "asimd", "sve", "sve2")


def cpu() -> dict:
  """The CPU's model, the instruction sets of ``ISA_FLAGS`` it has, and its logical cores."""
  model, flags = platform.processor() or platform.machine(), set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
          model = value.strip()
        elif key.strip() in ("flags", "Features"):
          flags |= set(value.split())
  except OSError:
    pass
  return {"model": model, "isa": [f for f in ISA_FLAGS if f in flags],
          "cores": os.cpu_count(), "march": os.environ.get(MARCH_ENV, "").strip() or "native"}


def _library_name(cxx: str) -> str:
  here = Path(__file__).parent
  h = hashlib.sha256()
  for name in _SOURCES:
    h.update((here / name).read_bytes())
  version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False)
  for part in (" ".join(_flags()), version.stdout, jax.lib.__version__, _cpu_signature()):
    h.update(part.encode())
  return f"mixture-{h.hexdigest()[:16]}.so"


def _build(cxx: str, out: Path) -> None:
  here = Path(__file__).parent
  fd, tmp = tempfile.mkstemp(suffix=".so.tmp", dir=out.parent)
  os.close(fd)
  try:
    cmd = [cxx, *_flags(), "-isystem", jax.ffi.include_dir(), str(here / "mixture.cc"), "-o", tmp]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
      raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip()
                         else f"{cxx} exited with {done.returncode}")
    os.replace(tmp, out)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def _find_or_build(cxx: str) -> Path:
  name = _library_name(cxx)
  found = cache.find(name)
  if found is not None:
    return found
  path = cache.writable_dir() / name
  print(f"actsearch: building the CPU kernel of the mixture (once): {path}", file=sys.stderr,
        flush=True)
  _build(cxx, path)
  return path


_LOADED: list[Path] = []  # the library available() loaded


def library() -> Path:
  """The path of the library ``available()`` loaded (call that first)."""
  return _LOADED[0]


@functools.cache
def available() -> bool:
  """Build (once per machine and version) and register the kernel; False if it cannot be."""
  if os.environ.get("ACTSEARCH_KERNELS", "").strip() == "0":
    return False
  cxx = _compiler()
  if cxx is None:
    warnings.warn("actsearch: no C++ compiler found ($CXX or c++); the fused mixture runs as "
                  "XLA code, which is slower", stacklevel=2)
    return False
  try:
    path = _find_or_build(cxx)
    lib = ctypes.cdll.LoadLibrary(str(path))
    for target, symbol, *_ in _HANDLERS.values():
      jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)),
                                  platform="cpu")
    _LOADED.append(path)
  except (OSError, RuntimeError) as err:
    warnings.warn(f"actsearch: the CPU kernel of the fused mixture could not be built ({err}); "
                  "it runs as XLA code, which is slower", stacklevel=2)
    return False
  return True


def row_length(size: int) -> int:
  """The largest divisor of ``size`` up to ``MAX_COLS``: the row length of a per-layer slot,
  whose weights do not depend on the column."""
  return max(c for c in range(1, min(size, MAX_COLS) + 1) if size % c == 0)


def call(kind: str, names, x, w, *operands):
  r"""The kernel's pass ``kind`` (a key of ``_HANDLERS``) inside a JAX computation.

  ``operands`` are shaped like x (g; g and a for the curvature passes), then for
  ``curvature`` the weights' cotangent b, shaped like w. x is viewed as rows ``[R, C]``: C
  is the channel axis for per-channel weights ``[C, K]``, else ``row_length(x.size)``, with
  the ``[K]`` weights broadcast over it; the kernel takes weights (and b) transposed,
  ``[K, C]``. Returns the outputs shaped like x, then the sums over rows (summed over the
  columns too for per-layer weights, so shaped like w): one array, or a tuple."""
  target, _, takes_b, n_like_x, has_sums = _HANDLERS[kind]
  k = len(names)
  cols = x.shape[-1] if w.ndim == 2 else row_length(x.size)

  def transposed(v):
    return v.T if w.ndim == 2 else jnp.broadcast_to(v[:, None], (k, cols))
  maps, per_weight = (operands[:-1], operands[-1:]) if takes_b else (operands, ())
  args = [a.reshape(-1, cols) for a in (x, *maps)] + [transposed(v) for v in (w, *per_weight)]
  shapes = [jax.ShapeDtypeStruct(args[0].shape, x.dtype)] * n_like_x
  if has_sums:
    shapes.append(jax.ShapeDtypeStruct((k, cols), x.dtype))
  ids = np.asarray([IDS[n] for n in names], np.int32)
  outs = jax.ffi.ffi_call(target, shapes, vmap_method="sequential")(*args, ids=ids)
  results = [o.reshape(x.shape) for o in outs[:n_like_x]]
  if has_sums:
    results.append((outs[-1].T if w.ndim == 2 else outs[-1].sum(axis=1)).astype(w.dtype))
  return tuple(results) if len(results) > 1 else results[0]
