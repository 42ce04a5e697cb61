"""Relaxations, the mixed slot and its alpha variable type."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from actsearch import models
from actsearch.errors import UserError
from actsearch.space import relaxations
from actsearch.space.mixed import ArchParam, FixedActivation, MixedActivation, mix_reference

ALPHA = jnp.array([[0.3, -1.2, 0.8, 0.0], [2.0, 0.1, -0.5, 0.4]])


@pytest.mark.parametrize("name", sorted(relaxations.RELAXATIONS))
def test_relaxations_give_valid_weights(name):
  fn = relaxations.get(name)
  w = fn(ALPHA, None, 1.0)
  assert w.shape == ALPHA.shape
  assert bool(jnp.all(w >= 0)) and bool(jnp.all(w <= 1))
  if name != "sigmoid":
    np.testing.assert_allclose(np.asarray(w.sum(-1)), 1.0, rtol=1e-6)
  g = jax.grad(lambda a: jnp.sum(fn(a, jax.random.key(1), 1.0) * jnp.arange(4.0)))(ALPHA)
  assert bool(jnp.all(jnp.isfinite(g)))
  assert (float(jnp.abs(g).sum()) > 0) == (name != "draw")  # random activation: no gradient


def test_a_draw_is_one_candidate_uniform_over_those_not_removed():
  alpha = jnp.array([0.3, -1e4, 0.8, 0.0])  # candidate 1 removed
  draws = np.stack([np.asarray(relaxations.draw(alpha, jax.random.key(i))) for i in range(600)])
  assert set(np.unique(draws)) == {0.0, 1.0} and (draws.sum(1) == 1).all()
  counts = draws.sum(0)
  assert counts[1] == 0 and all(160 < c < 240 for c in counts[[0, 2, 3]]), counts
  np.testing.assert_allclose(np.asarray(relaxations.draw(alpha)), [1 / 3, 0, 1 / 3, 1 / 3])
  pinned = jnp.array([-1e4, 1e4, -1e4, -1e4])  # pinned: that candidate exactly, keyed or not
  for key in (None, jax.random.key(5)):
    np.testing.assert_array_equal(np.asarray(relaxations.draw(pinned, key)), [0, 1, 0, 0])


def test_softmax_is_the_darts_formula_and_temperature_sharpens():
  w = relaxations.softmax(ALPHA[0])
  e = np.exp(np.asarray(ALPHA[0]))
  np.testing.assert_allclose(np.asarray(w), e / e.sum(), rtol=1e-6)
  assert float(relaxations.softmax(ALPHA[0], None, 0.1).max()) > float(w.max())


@pytest.mark.parametrize("name", sorted(relaxations.STOCHASTIC))
def test_stochastic_relaxations_sample_with_a_key_and_not_without(name):
  fn = relaxations.get(name)
  a, b = fn(ALPHA, jax.random.key(0)), fn(ALPHA, jax.random.key(1))
  assert not np.allclose(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(np.asarray(fn(ALPHA)), np.asarray(fn(ALPHA)))


def test_unknown_relaxation_is_a_user_error():
  with pytest.raises(UserError, match="known: softmax"):
    relaxations.get("sparsemax")


def test_entropy_is_log_k_for_uniform_weights():
  assert float(relaxations.entropy(jnp.full((5,), 0.2))) == pytest.approx(np.log(5), rel=1e-6)


CANDS = ["relu", "tanh", "sin", "gaussian", "prelu"]


@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_mixed_activation_is_the_weighted_sum(granularity):
  slot = MixedActivation(CANDS, channels=3, granularity=granularity, rngs=nnx.Rngs(0))
  slot.alpha[...] = jax.random.normal(jax.random.key(2), slot.alpha[...].shape)
  x = jax.random.normal(jax.random.key(3), (7, 3))
  w = np.asarray(jax.nn.softmax(slot.alpha[...], -1))
  xn = np.asarray(x)
  want = (w[..., 0] * np.maximum(xn, 0) + w[..., 1] * np.tanh(xn) + w[..., 2] * np.sin(xn)
          + w[..., 3] * np.exp(-xn ** 2) + w[..., 4] * np.where(xn >= 0, xn, 0.25 * xn))
  np.testing.assert_allclose(np.asarray(slot(x)), want, rtol=1e-5, atol=1e-6)
  assert slot.alpha[...].shape == ((3, 5) if granularity == "channel" else (5,))


def test_alpha_is_its_own_variable_type_and_not_a_weight():
  slot = MixedActivation(CANDS, channels=4, rngs=nnx.Rngs(0))
  params = nnx.state(slot, nnx.Param)
  arch = nnx.state(slot, ArchParam)
  assert not issubclass(ArchParam, nnx.Param)
  assert [p[-1] for p, _ in nnx.to_flat_state(arch)] == ["alpha"]
  assert "alpha" not in {p[-1] for p, _ in nnx.to_flat_state(params)}
  assert "p_prelu__slope" in {p[-1] for p, _ in nnx.to_flat_state(params)}


def test_fixed_activation_applies_its_choice_and_learned_params():
  x = jnp.linspace(-2, 2, 9)[:, None]
  fixed = FixedActivation("prelu", channels=1, params={"prelu": {"slope": 0.1}})
  np.testing.assert_allclose(np.asarray(fixed(x)), np.where(x >= 0, x, 0.1 * x), rtol=1e-6)
  per_channel = FixedActivation(["relu", "sin", "relu"], channels=3)
  x3 = jnp.linspace(-2, 2, 12).reshape(4, 3)
  want = np.stack([np.maximum(x3[:, 0], 0), np.sin(x3[:, 1]), np.maximum(x3[:, 2], 0)], 1)
  np.testing.assert_allclose(np.asarray(per_channel(x3)), want, rtol=1e-6)


# Every built-in backbone: config, input shape, its slots' names.
BACKBONES = {
    "mlp": ({"name": "mlp", "widths": [8, 6]}, (4,), ["block0/act", "block1/act"]),
    "cnn1d": ({"name": "cnn1d", "widths": [25, 25, 25], "kernel_sizes": [5, 3, 3]}, (40,),
              ["block0/act", "block1/act", "block2/act"]),
    "cnn2d": ({"name": "cnn2d", "widths": [4, 6], "dense": 5}, (8, 8, 1),
              ["block0/act", "block1/act", "block2/act"]),
}


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_backbones_name_their_slots_and_run(backbone):
  import ml_collections
  spec, shape, names = BACKBONES[backbone]
  rngs = nnx.Rngs(0)
  cfg = ml_collections.ConfigDict(spec)
  slot = models.search_slots(["relu", "sin"], "softmax", "layer", rngs)
  net = models.build(cfg, shape, 10, slot, rngs)
  assert [n for n, _ in models.slots(net)] == names
  assert net(jnp.zeros((2, *shape)), jax.random.key(0)).shape == (2, 10)
  fixed = models.build(cfg, shape, 1, models.uniform_slots("relu"), rngs)
  assert fixed(jnp.zeros((3, *shape))).shape == (3, 1)
  assert all(isinstance(s, FixedActivation) for _, s in models.slots(fixed))


def test_mix_reference_matches_manual_sum_for_channel_weights():
  from actsearch.space import activations
  cands = activations.resolve(["relu", "sin"])
  w = jnp.array([[1.0, 0.0], [0.25, 0.75]])
  x = jnp.array([[-1.0, 2.0], [0.5, -0.5]])
  got = mix_reference(x, w, cands, {})
  want = np.array([[0.0, 0.25 * 2 + 0.75 * np.sin(2.0)], [0.5, 0.75 * np.sin(-0.5)]])
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)


def test_the_fused_pass_keeps_the_candidates_it_covers_beside_parametric_ones(monkeypatch):
  """relu, gelu and tanh go through one fused pass; prelu and pau are added plainly; the sum
  equals the plain mixture, values and gradients."""
  from flax import nnx

  from actsearch.space import fused, mixed

  seen = []
  original = fused.mix
  monkeypatch.setattr(fused, "mix", lambda x, w, names, plan=None: (
      seen.append(names), original(x, w, names, plan))[1])
  slot = mixed.MixedActivation(["relu", "prelu", "gelu", "pau", "tanh"], channels=3,
                               rngs=nnx.Rngs(0), implementation="xla")
  x = jnp.linspace(-3, 3, 24).reshape(8, 3)
  w = slot.weights()
  got = slot(x)
  assert seen == [("relu", "gelu", "tanh")]
  want = mixed.mix_reference(x, w, slot.candidates, slot.candidate_params())
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
  g1 = jax.grad(lambda v: jnp.sum(jnp.sin(slot(v))))(x)
  g2 = jax.grad(lambda v: jnp.sum(jnp.sin(mixed.mix_reference(
      v, w, slot.candidates, slot.candidate_params()))))(x)
  np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-5, atol=1e-6)
