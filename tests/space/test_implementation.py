"""Which implementation each pass of the fused mixture takes: plans, the rule on injected
measurements (no timing), the machine's cached plan, and the passes a plan compiles to."""

import json
import re

import jax
import jax.numpy as jnp
import pytest

from actsearch.errors import UserError
from actsearch.space import fused, kernels
from actsearch.space import implementation as impl

NAMES = impl.MEASURED_CANDIDATES  # the benchmark's eight


def _timings(slower=()):
  """Measurements in which the kernel is slower exactly at the entries ``slower``."""
  return {f"{p}.{s}": {"kernel": 2.0 if (p, s) in slower else 1.0, "xla": 1.5}
          for p, s in impl.ENTRIES}


@pytest.mark.parametrize("slower", [
    (),
    tuple(impl.ENTRIES),
    (("forward", "large"), ("dx", "large")),       # what an x86-64-v2 build measured
    (("backward", "small"),),
])
def test_the_rule_takes_the_kernel_unless_it_was_slower(slower):
  plan = impl.decide(_timings(slower))
  assert plan.kernel == frozenset(impl.ENTRIES) - set(slower)
  assert impl.parse(plan.spec()) == plan  # the spec round-trips


def test_a_tie_takes_the_kernel_and_an_unmeasured_entry_the_xla_code():
  timings = _timings()
  timings["forward.small"] = {"kernel": 1.5, "xla": 1.5}
  del timings["curvature.large"]
  plan = impl.decide(timings)
  assert plan.uses_kernel("forward", 10) and not plan.uses_kernel("curvature", 1 << 20)


def test_sizes_fall_into_their_classes():
  plan = impl.parse(impl.Plan(frozenset({("dx", "small")})).spec())
  assert plan.uses_kernel("dx", impl.SMALL_ELEMENTS - 1)
  assert not plan.uses_kernel("dx", impl.SMALL_ELEMENTS)


@pytest.mark.parametrize("spec,needle", [
    ("gpu", "PASS.SIZE=kernel|xla"),
    ("forward.small=kernel", "no choice for forward.large"),
    ("forward.tiny=kernel", "'forward.tiny=kernel'"),
    ("forward.small=cuda", "'forward.small=cuda'"),
    (3, "must be a string"),
])
def test_a_bad_plan_is_refused_naming_what_is_wrong(spec, needle):
  with pytest.raises(UserError) as err:
    impl.check(spec)
  assert needle in str(err.value)


def test_a_recorded_plan_wins_over_auto_and_an_explicit_one_is_kept():
  mixed = impl.decide(_timings((("forward", "large"),))).spec()
  assert impl.resolve("auto", mixed) == mixed
  assert impl.resolve("xla", mixed) == "xla"  # the caller refuses the difference
  assert impl.resolve("kernel") == "kernel"


@pytest.fixture
def fresh_plan(monkeypatch):
  impl.machine_plan.cache_clear()
  yield monkeypatch
  impl.machine_plan.cache_clear()


@pytest.mark.parametrize("env,expected", [("0", "xla"), ("1", "kernel")])
def test_the_environment_forces_either(fresh_plan, env, expected):
  fresh_plan.setenv(impl.ENV, env)
  fresh_plan.setattr(impl, "measure", lambda: pytest.fail("nothing is measured when forced"))
  if expected == "kernel" and not kernels.available():
    expected = "xla"
  assert impl.machine_plan().spec() == expected


@pytest.mark.skipif(not kernels.available(), reason="the CPU kernel could not be built here")
def test_the_machine_is_measured_once_and_its_plan_cached_beside_the_kernel(fresh_plan):
  path = kernels.library().with_suffix(".plan.json")
  path.unlink(missing_ok=True)
  fresh_plan.delenv(impl.ENV, raising=False)
  calls = []
  slower = (("forward", "large"),)
  fresh_plan.setattr(impl, "measure", lambda: calls.append(1) or _timings(slower))
  try:
    assert impl.machine_plan() == impl.decide(_timings(slower))
    stored = json.loads(path.read_text())
    assert stored["plan"] == impl.machine_plan().spec() and len(calls) == 1
    impl.machine_plan.cache_clear()  # a new process: the file answers, nothing is measured
    assert impl.machine_plan() == impl.decide(_timings(slower)) and len(calls) == 1
  finally:
    path.unlink(missing_ok=True)


@pytest.mark.skipif(not kernels.available(), reason="the CPU kernel could not be built here")
def test_the_measurement_times_every_entry_of_both_implementations():
  timings = impl.measure(repeats=1)
  assert set(timings) == {f"{p}.{s}" for p, s in impl.ENTRIES}
  assert all(t["kernel"] > 0 and t["xla"] > 0 for t in timings.values())


def _compiled_passes(plan, shape):
  """The kernel passes that the forward pass, the full gradient and the weight step's
  gradient (dx alone) of a mixture compile to."""
  x, w = jnp.ones(shape), jnp.full((len(NAMES),), 1 / len(NAMES))
  plan = impl.parse(plan)
  loss = lambda x, w: jnp.sum(jnp.sin(fused.mix(x, w, NAMES, plan)))
  programs = (jax.jit(lambda x, w: fused.mix(x, w, NAMES, plan)),
              jax.jit(jax.grad(loss, argnums=(0, 1))), jax.jit(jax.grad(loss)))
  return {kind for p in programs
          for kind in re.findall(r"@actsearch_mix_(\w+)\(", p.lower(x, w).as_text())}


@pytest.mark.skipif(not kernels.available(), reason="the CPU kernel could not be built here")
@pytest.mark.parametrize("shape", [(8, 16), (256, 512)])
def test_a_plan_compiles_its_kernel_passes_and_xla_code_for_the_rest(shape):
  size = impl.size_class(shape[0] * shape[1])
  plan = impl.Plan(frozenset({("backward", size), ("dx", "small" if size == "large" else "large")}))
  assert _compiled_passes(plan.spec(), shape) == {"backward"}
  assert _compiled_passes("kernel", shape) == {"forward", "backward", "dx"}
  assert _compiled_passes("xla", shape) == set()
