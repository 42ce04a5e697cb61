"""``actsearch candidates`` counts at least 40 distinct families: the representatives of the
fixed and parametric families are pairwise distinct up to an affine map (``space/families``:
neither a f(b x + c) + d of one fits the other on [-5, 5] within RMS 1e-2), computed here in
float64 with the scales b from 0.01 to 100."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from actsearch.space import activations, candidates_table, families

pytestmark = pytest.mark.slow


def _numpy(cand):
  params = {k: jnp.asarray(v, jnp.float64) for k, v in cand.params.items()}
  f = jax.jit(lambda x: cand.fn(x, **params))
  return lambda x: np.asarray(f(jnp.asarray(x, jnp.float64)), np.float64)


def test_at_least_40_families_are_pairwise_distinct_up_to_an_affine_map():
  builtins = [activations.get(n) for n in activations.builtin_names()]  # not tests' own
  reps = {name: c for name, c in families.representatives(builtins).items()
          if c.kind != "learned"}  # a learned family can take nearly any shape: not compared
  assert len(reps) >= 40, sorted(reps)
  with jax.enable_x64(True):
    fns = {name: _numpy(c) for name, c in reps.items()}
    close = []
    for a, b in itertools.combinations(sorted(fns), 2):
      r = min(families.affine_residual(fns[a], fns[b]), families.affine_residual(fns[b], fns[a]))
      if r <= families.DISTINCT:
        close.append((round(r, 5), a, b))
  assert not close, close


def test_the_fitter_finds_known_affine_equalities():
  """The fitter is strong enough for the test above to mean something: equalities by an
  affine map (sigmoid and tanh, relu6 and hard_tanh, cos and sin) come out near 0, and a
  member of a family (erf near the sigmoid) below the bound."""
  with jax.enable_x64(True):
    f = {n: _numpy(activations.get(n)) for n in ("sigmoid", "tanh", "relu6", "hard_tanh",
                                                 "sin", "cos", "erf", "gaussian")}
    assert families.affine_residual(f["tanh"], f["sigmoid"]) < 1e-4
    assert families.affine_residual(f["hard_tanh"], f["relu6"]) < 1e-4
    assert families.affine_residual(f["sin"], f["cos"]) < 1e-4
    assert families.affine_residual(f["sigmoid"], f["erf"]) < families.DISTINCT
    assert families.affine_residual(f["sin"], f["gaussian"]) > 0.05


def test_the_candidates_command_counts_the_families():
  text = candidates_table.text()
  reps = families.representatives(activations.all_candidates())
  fixed = [c for c in reps.values() if c.kind != "learned"]
  assert f"{len(fixed)} distinct families" in text and len(fixed) >= 40
  for kind in ("fixed", "parametric", "learned"):
    assert f"\n{kind} (" in f"\n{text}"
