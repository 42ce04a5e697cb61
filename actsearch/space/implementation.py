r"""Which implementation each pass of the fused mixture uses: the C++ kernel or the XLA code.

Both compute the same formulas (``fused``); they agree to about 2e-5, and which one is faster
depends on the CPU: on AVX2 and AVX-512 machines the kernel wins every pass, while a build for
SSE4.2 (``x86-64-v2``) loses its forward and ``dx`` passes on large arrays to XLA's own code
(docs/performance.md, "Kernel or XLA code"). So the choice is made per pass and per size
class:

* passes: ``forward``, ``backward`` (dx and the alpha gradient), ``dx`` (the weight step's),
  ``curvature`` and ``dx_curvature`` (their VJPs, for second-order hypergradients);
* sizes: ``small`` (fewer than ``SMALL_ELEMENTS`` elements, which the kernel runs on one
  thread) and ``large``.

A plan is written as ``kernel`` (every pass), ``xla`` (none), or one entry per pass and size,
``forward.small=kernel,forward.large=xla,...``. ``search.implementation`` takes a plan or
``auto``: the machine's plan, which is

* ``xla`` with ``ACTSEARCH_KERNELS=0`` (or where the kernel cannot be built), ``kernel`` with
  ``ACTSEARCH_KERNELS=1``;
* otherwise measured once per machine: each pass of both implementations timed on the
  benchmark's eight candidates at one size of each class (``measure``), the faster one chosen
  (``decide``: the kernel unless it is slower), and the measurements cached beside the
  kernel's library, whose name already hashes the sources, flags, compiler, jaxlib and CPU.

A run records the concrete plan it resolved (``config.json``) and keeps it on resume, so a
wiped cache or a new measurement never changes what a resumed run computes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import statistics
import sys
import time

from actsearch.errors import UserError

PASSES = ("forward", "backward", "dx", "curvature", "dx_curvature")
SIZES = ("small", "large")
SMALL_ELEMENTS = 1 << 16  # the kernel's unit of work per thread (mixture.cc, unit_count)
# The arrays the measurement times, one per size class: rows of a per-layer slot.
MEASURED_SHAPES = {"small": (64, 256), "large": (256, 1024)}
# The benchmark's eight candidates: the machine's measurement, ``actsearch bench``'s mlp case and
# its PyTorch peer all mix these.
MEASURED_CANDIDATES = ("relu", "tanh", "sigmoid", "sin", "gelu", "silu", "elu", "softplus")
ENV = "ACTSEARCH_KERNELS"
ENTRIES = tuple((p, s) for p in PASSES for s in SIZES)


@dataclasses.dataclass(frozen=True)
class Plan:
  """The (pass, size) entries that use the kernel."""

  kernel: frozenset = frozenset()

  def uses_kernel(self, kind: str, size: int) -> bool:
    return (kind, size_class(size)) in self.kernel

  def spec(self) -> str:
    """The plan as written in a config: ``kernel``, ``xla`` or one entry per pass and size."""
    if self.kernel == frozenset(ENTRIES):
      return "kernel"
    if not self.kernel:
      return "xla"
    return ",".join(f"{p}.{s}={'kernel' if (p, s) in self.kernel else 'xla'}"
                    for p, s in ENTRIES)


KERNEL = Plan(frozenset(ENTRIES))
XLA = Plan()


def size_class(size: int) -> str:
  return "small" if size < SMALL_ELEMENTS else "large"


@functools.cache
def parse(spec: str) -> Plan:
  """A plan from its spec (``kernel``, ``xla`` or ``pass.size=impl,...`` naming every entry);
  ``UserError`` naming what is wrong."""
  if not isinstance(spec, str):
    raise UserError(f"search.implementation must be a string, got {spec!r}")
  text = spec.strip()
  if text in ("kernel", "xla"):
    return KERNEL if text == "kernel" else XLA
  chosen = {}
  for part in filter(None, (p.strip() for p in text.split(","))):
    key, sep, impl = part.partition("=")
    entry = tuple(key.strip().split(".", 1))
    if not sep or entry not in ENTRIES or impl.strip() not in ("kernel", "xla"):
      raise UserError(f"search.implementation: {part!r} is not PASS.SIZE=kernel|xla (passes: "
                      f"{', '.join(PASSES)}; sizes: {', '.join(SIZES)}); or use auto, kernel "
                      "or xla")
    chosen[entry] = impl.strip() == "kernel"
  missing = [f"{p}.{s}" for p, s in ENTRIES if (p, s) not in chosen]
  if missing:
    raise UserError(f"search.implementation names no choice for {', '.join(missing)}")
  return Plan(frozenset(e for e, k in chosen.items() if k))


def check(spec: str) -> None:
  """Refuses a ``search.implementation`` that is neither ``auto`` nor a plan."""
  if spec != "auto":
    parse(spec)


def decide(timings: dict) -> Plan:
  """The rule: each (pass, size) entry uses the kernel unless the kernel was slower there.
  ``timings`` maps ``"pass.size"`` to ``{"kernel": ms, "xla": ms}``; an entry not measured
  uses the XLA code."""
  chosen = set()
  for p, s in ENTRIES:
    t = timings.get(f"{p}.{s}")
    if t is not None and t["kernel"] <= t["xla"]:
      chosen.add((p, s))
  return Plan(frozenset(chosen))


def _pass_functions(kind: str):
  """``(kernel_fn, xla_fn, arity)`` of one pass: the kernel's call and the XLA code of
  ``fused``, both over ``(x, w, *operands)``."""
  from actsearch.space import fused, kernels

  names = MEASURED_CANDIDATES
  xla = {"forward": lambda x, w: fused._forward(x, w, names),
         "backward": lambda x, w, g: fused._bwd_blocked(names, x, w, g),
         "dx": lambda x, w, g: fused._dx_xla(names, x, w, g),
         "curvature": lambda x, w, g, a, b: fused._curvature_xla(names, x, w, g, a, b),
         "dx_curvature": lambda x, w, g, a: fused._curvature_xla(names, x, w, g, a)}[kind]
  return functools.partial(kernels.call, kind, names), xla


def measure(repeats: int = 15) -> dict:
  """Times every pass of both implementations at one shape per size class: the median of
  ``repeats`` calls after warm-up, the two called in turn so that the machine's drift touches
  both alike. Returns ``{"pass.size": {"kernel": ms, "xla": ms}}``."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  rng = np.random.default_rng(0)
  k = len(MEASURED_CANDIDATES)
  out = {}
  for size, shape in MEASURED_SHAPES.items():
    arrays = [jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(3)]
    w = jnp.asarray(np.full(k, 1.0 / k), jnp.float32)
    b = jnp.asarray(rng.normal(size=k), jnp.float32)
    for kind in PASSES:
      x, g, a = arrays
      args = {"forward": (x, w), "backward": (x, w, g), "dx": (x, w, g),
              "curvature": (x, w, g, a, b), "dx_curvature": (x, w, g, a)}[kind]
      fns = [jax.jit(f) for f in _pass_functions(kind)]
      for fn in fns:
        for _ in range(2):
          jax.block_until_ready(fn(*args))
      times = ([], [])
      for _ in range(repeats):
        for fn, ts in zip(fns, times):
          t0 = time.perf_counter()
          jax.block_until_ready(fn(*args))
          ts.append((time.perf_counter() - t0) * 1e3)
      out[f"{kind}.{size}"] = {"kernel": statistics.median(times[0]),
                               "xla": statistics.median(times[1])}
  return out


def _cached_timings() -> dict:
  """The machine's measurements, from the file beside the kernel's library, or measured now
  and written there (whole, by rename: concurrent first uses never read half a file)."""
  from actsearch.space import kernels

  path = kernels.library().with_suffix(".plan.json")
  try:
    with open(path, encoding="utf-8") as f:
      stored = json.load(f)
    if isinstance(stored, dict) and isinstance(stored.get("timings"), dict):
      return stored["timings"]
  except (OSError, ValueError):
    pass
  print("actsearch: measuring the kernel against the XLA code, pass by pass (once)",
        file=sys.stderr, flush=True)
  timings = measure()
  tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump({"timings": timings, "plan": decide(timings).spec()}, f, indent=1)
    os.replace(tmp, path)
  except OSError:
    pass  # an unwritable cache measures again next time; the plan is the same rule
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  return timings


@functools.cache
def machine_plan() -> Plan:
  """This machine's plan: forced by ``ACTSEARCH_KERNELS``, else measured once and cached."""
  from actsearch.space import kernels

  forced = os.environ.get(ENV, "").strip()
  if forced == "0" or not kernels.available():
    return XLA
  if forced == "1":
    return KERNEL
  return decide(_cached_timings())


def resolve(requested: str, recorded: str | None = None) -> str:
  """The concrete plan of a run: the one it ``recorded`` if it has one (``requested`` may then
  be ``auto`` or a plan; a different plan is the caller's to refuse), else ``requested``, with
  ``auto`` the machine's plan. Returned in canonical form."""
  check(requested)
  if recorded is not None and requested == "auto":
    return parse(recorded).spec()
  return (machine_plan() if requested == "auto" else parse(requested)).spec()
