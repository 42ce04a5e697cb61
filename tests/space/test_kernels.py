"""The C++ kernel of the fused mixture: which passes use it, every shape it sees, and how it is
built, cached and done without."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from actsearch.space import fused, implementation, kernels

pytestmark = pytest.mark.skipif(not kernels.available(),
                                reason="the CPU kernel could not be built here")

BENCH = implementation.MEASURED_CANDIDATES


def _hlo(fn, *args):
  return jax.jit(fn).lower(*args).as_text()


def test_every_fused_rule_has_a_kernel_id():
  # The ids follow the enum in mixture_core.h; test_fused checks each one's values.
  assert set(kernels.NAMES) == set(fused.RULES)
  assert len(set(kernels.IDS.values())) == len(kernels.NAMES)


def test_each_pass_calls_its_kernel_on_cpu_float32():
  x, w = jnp.ones((4, 8)), jnp.full((len(BENCH),), 0.125)
  loss = lambda x, w: jnp.sum(jnp.sin(fused.mix(x, w, BENCH)))
  assert "actsearch_mix_forward" in _hlo(lambda x, w: fused.mix(x, w, BENCH), x, w)
  both = _hlo(jax.grad(loss, argnums=(0, 1)), x, w)
  assert "actsearch_mix_backward" in both and "actsearch_mix_dx" not in both
  # The weight step differentiates x (and weights) only: dL/dx alone, no alpha sums.
  assert "actsearch_mix_dx" in _hlo(jax.grad(loss), x, w)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.bfloat16])
def test_other_dtypes_take_the_xla_passes(dtype):
  with jax.enable_x64(True):
    x, w = jnp.ones((4, 8), dtype), jnp.full((2,), 0.5, dtype)
    text = _hlo(jax.grad(lambda x, w: jnp.sum(fused.mix(x, w, ("relu", "tanh")).astype(
        jnp.float32))), x, w)
  assert "actsearch_mix" not in text


def _xla(monkeypatch):
  monkeypatch.setattr(fused, "_use_kernel", lambda *args: False)


@pytest.mark.parametrize("shape,granularity", [
    ((1031,), "layer"),          # a prime size: rows of one element
    ((1031,), "channel"),        # one row of 1031 channels: blocks of 256 and a remainder
    ((3, 700), "layer"),         # rows of 700, the largest divisor of 2100 up to 1024
    ((5, 7, 3), "channel"),      # few channels
    ((300, 1000), "layer"),      # several units of rows, on several threads
    ((300, 1000), "channel"),
])
def test_kernel_equals_the_xla_passes_on_any_shape(shape, granularity, monkeypatch):
  x = jax.random.normal(jax.random.key(0), shape) * 3
  g = jax.random.normal(jax.random.key(1), shape)
  wshape = (shape[-1], len(BENCH)) if granularity == "channel" else (len(BENCH),)
  w = jax.nn.softmax(jax.random.normal(jax.random.key(2), wshape), -1)

  def passes():  # a new function each time: jit must trace it again
    def run(x, w, g):
      f = lambda x, w: fused.mix(x, w, BENCH)
      y, vjp = jax.vjp(f, x, w)
      dx_alone = jax.vjp(lambda x: f(x, w), x)[1](g)[0]
      return (y, *vjp(g), dx_alone)
    return jax.jit(run)(x, w, g)
  kernel = passes()
  _xla(monkeypatch)
  xla = passes()
  for a, b in zip(kernel, xla):
    scale = float(np.abs(np.asarray(b)).max()) + 1.0
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6 * scale)


@pytest.mark.parametrize("inner", ["x", "x_and_w"])
@pytest.mark.parametrize("shape,granularity", [((300, 1000), "layer"), ((40, 7, 50), "channel")])
def test_kernel_second_derivatives_equal_the_xla_ones(inner, shape, granularity, monkeypatch):
  # The curvature passes, for every candidate with a rule: inner="x" differentiates the
  # weight step's backward pass (dx alone), inner="x_and_w" the full one.
  names = tuple(sorted(fused.RULES))
  x = jax.random.normal(jax.random.key(0), shape) * 2
  wshape = (shape[-1], len(names)) if granularity == "channel" else (len(names),)
  w = jax.nn.softmax(jax.random.normal(jax.random.key(2), wshape), -1)

  def second():  # a new function each time: jit must trace it again
    def run(x, w):
      loss = lambda x, w: jnp.sum(jnp.sin(fused.mix(x, w, names)))
      if inner == "x":
        return jnp.sum(jax.grad(loss)(x, w) ** 2)
      dx, dw = jax.grad(loss, argnums=(0, 1))(x, w)
      # dw sums 300,000 terms: a smooth function of it, so that rounding does not matter
      return jnp.sum(dx ** 2) + jnp.sum(dw ** 2) / dw.size
    text = jax.jit(jax.grad(run, argnums=(0, 1))).lower(x, w).as_text()
    return jax.jit(jax.grad(run, argnums=(0, 1)))(x, w), text
  kernel, text = second()
  assert ("actsearch_mix_dx_curvature" if inner == "x" else "actsearch_mix_curvature") in text
  _xla(monkeypatch)
  xla, _ = second()
  for a, b in zip(kernel, xla):
    scale = float(np.abs(np.asarray(b)).max()) + 1.0
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("name", sorted(fused.RULES))
def test_kernel_treats_non_finite_inputs_like_the_xla_passes(name, monkeypatch):
  # A NaN must reach the loss, where the run's guard stops the search.
  x = [np.nan, np.inf, -np.inf, 0.0, 88.0, -88.0, 1e4, -1e4]
  if name not in ("sin", "cos"):  # their range reduction is exact to |x| ~ 8192, not 1e30
    x += [1e30, -1e30]
  x = jnp.array([x])
  w = jnp.array([1.0])

  def values_and_gradients():
    def run(x, w):
      y, vjp = jax.vjp(lambda x, w: fused.mix(x, w, (name,)), x, w)
      return y, vjp(jnp.ones_like(y))[0]
    return jax.jit(run)(x, w)
  kernel = values_and_gradients()
  _xla(monkeypatch)
  xla = values_and_gradients()
  for a, b in zip(kernel, xla):
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(np.nan_to_num(np.asarray(a)), np.nan_to_num(np.asarray(b)),
                               rtol=1e-5)


def test_kernel_under_vmap_equals_one_call_per_example():
  x = jax.random.normal(jax.random.key(0), (3, 16, 32))
  w = jax.nn.softmax(jax.random.normal(jax.random.key(1), (3, len(BENCH))), -1)
  f = lambda x, w: jnp.sum(jnp.sin(fused.mix(x, w, BENCH)))
  batched = jax.vmap(jax.grad(f, argnums=(0, 1)))(x, w)
  for i in range(3):
    one = jax.grad(f, argnums=(0, 1))(x[i], w[i])
    for a, b in zip(batched, one):
      np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b), rtol=1e-6, atol=1e-6)


_PROBE = textwrap.dedent("""
    import warnings
    import jax, jax.numpy as jnp
    from actsearch.space import fused, kernels
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      ok = kernels.available()
    x = jnp.linspace(-3, 3, 64).reshape(8, 8)
    f = lambda x: jnp.sum(jnp.sin(fused.mix(x, jnp.array([0.3, 0.7]), ("tanh", "sin"))))
    text = jax.jit(jax.grad(f)).lower(x).as_text()
    print(ok, "actsearch_mix" in text, float(jax.grad(f)(x).sum()))
    for w in caught:
      print("WARNING", w.message)
""")


def _probe(cache=None, **env):
  """A fresh process that builds or loads the kernel from ``cache`` (default: the user's)."""
  full = {**os.environ, **env}
  if cache is not None:
    full["ACTSEARCH_CACHE_DIR"] = str(cache)
  return subprocess.Popen([sys.executable, "-c", _PROBE], env=full, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _result(proc):
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err
  ok, used, total = out.splitlines()[0].split()
  return ok == "True", used == "True", float(total), out, err


@pytest.mark.slow  # two fresh builds of the kernel (21 s)
def test_two_first_uses_at_once_build_one_library_and_leave_no_temporary(tmp_path):
  procs = [_probe(tmp_path / "cache") for _ in range(2)]
  results = [_result(p) for p in procs]
  assert all(ok and used for ok, used, *_ in results)
  assert "building the CPU kernel" in results[0][4] + results[1][4]
  assert [p.name for p in (tmp_path / "cache").iterdir()] == [
      p.name for p in (tmp_path / "cache").glob("mixture-*.so")]
  assert len(list((tmp_path / "cache").iterdir())) == 1
  again = _result(_probe(tmp_path / "cache"))  # cached: loads without building
  assert again[0] and "building" not in again[4]
  assert again[2] == pytest.approx(results[0][2], rel=1e-6)


@pytest.mark.slow  # a fresh build of the kernel (22 s)
def test_an_unwritable_cache_directory_builds_in_a_temporary_one(tmp_path):
  blocker = tmp_path / "a-file"
  blocker.write_text("not a directory")
  tmp = tmp_path / "tmp"
  tmp.mkdir()
  ok, used, _, _, err = _result(_probe(blocker / "cache", TMPDIR=str(tmp)))
  assert ok and used
  built = list(tmp.glob("actsearch-*/mixture-*.so"))
  assert len(built) == 1 and str(built[0]) in err
  assert built[0].parent.stat().st_mode & 0o777 == 0o700  # no one else can plant a library


def test_a_temporary_directory_that_others_can_write_is_not_used(tmp_path):
  blocker = tmp_path / "a-file"
  blocker.write_text("not a directory")
  tmp = tmp_path / "tmp"
  shared = tmp / f"actsearch-{os.getuid()}"
  shared.mkdir(parents=True)
  shared.chmod(0o777)
  ok, used, _, out, _ = _result(_probe(blocker / "cache", TMPDIR=str(tmp)))
  assert not ok and not used
  assert "belongs to someone else or is shared" in out
  assert not list(shared.iterdir())


@pytest.mark.parametrize("setting", ["no_compiler", "failing_compiler", "turned_off"])
def test_without_the_kernel_the_mixture_runs_as_xla_code(tmp_path, setting):
  env = {"turned_off": {"ACTSEARCH_KERNELS": "0"},
         "no_compiler": {"CXX": str(tmp_path / "no-such-c++")}}.get(setting, {})
  if setting == "failing_compiler":
    cxx = tmp_path / "broken-c++"
    cxx.write_text("#!/bin/sh\necho 'broken-c++: cannot compile' >&2\nexit 1\n")
    cxx.chmod(0o755)
    env = {"CXX": str(cxx)}
  ok, used, total, out, _ = _result(_probe(tmp_path / "cache", **env))
  assert not ok and not used
  with_kernel = _result(_probe())[2]
  assert total == pytest.approx(with_kernel, rel=1e-5)
  if setting == "turned_off":
    assert "WARNING" not in out
  else:
    assert "WARNING" in out and "runs as XLA code" in out
  if setting == "failing_compiler":
    assert "cannot compile" in out


@pytest.mark.parametrize("chosen", BENCH)
def test_a_pinned_slot_computes_its_candidate_alone(chosen):
  # The shortlist pins a slot (weight 1 for one candidate, 0 for the others): its forward
  # pass and its weight step's dx leave the others out and equal the candidate alone
  # exactly; the full backward pass still gives every candidate's weight gradient.
  x = jax.random.normal(jax.random.key(0), (64, 300)) * 3
  g = jax.random.normal(jax.random.key(1), x.shape)
  onehot = jnp.asarray([1.0 if n == chosen else 0.0 for n in BENCH])

  def passes(w, names):
    y, vjp = jax.vjp(lambda x: fused.mix(x, w, names), x)
    return y, vjp(g)[0]
  pinned = jax.jit(lambda w: passes(w, BENCH))(onehot)
  alone = jax.jit(lambda w: passes(w, (chosen,)))(jnp.ones(1))
  for a, b in zip(pinned, alone):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  dw = jax.grad(lambda w: jnp.sum(g * fused.mix(x, w, BENCH)))(onehot)
  expected = [float(jnp.sum(g * fused.mix(x, jnp.ones(1), (n,)))) for n in BENCH]
  np.testing.assert_allclose(np.asarray(dw), expected, rtol=1e-4, atol=1e-2)
