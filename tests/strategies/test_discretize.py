"""Discretization methods (table-driven), stabilisers of the mixed slot, and both through the
real search."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from actsearch import architecture, cli, configs, usercode
from actsearch.errors import UserError
from actsearch.models.network import split_model
from actsearch.space import activations
from actsearch.space.mixed import MixedActivation, standard_moments
from actsearch.strategies import discretize

from conftest import ROOT

CANDS = ("relu", "gelu", "sin")


def _views():
  return [discretize.SlotView("block0/act", np.array([0.5, 0.3, 0.2]), CANDS, {}),
          discretize.SlotView("block1/act", np.array([0.1, 0.2, 0.7]), CANDS, {})]


def test_argmax_picks_the_largest_weight_and_scores_by_weight():
  layers, info = discretize.argmax(_views())
  assert [layer["choice"] for layer in layers] == ["relu", "sin"]
  assert layers[1]["scores"] == pytest.approx({"relu": 0.1, "gelu": 0.2, "sin": 0.7})
  assert info["method"] == "argmax"


def test_argmax_per_channel():
  view = discretize.SlotView("s", np.array([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]), CANDS, {})
  [layer], _ = discretize.argmax([view])
  assert layer["channel_choices"] == ["relu", "sin"]
  assert layer["choice"] == "sin"  # mean weights: relu 0.35, gelu 0.2, sin 0.45


def test_shortlist_spans_the_top_k_of_each_slot_in_order_of_the_weight_product():
  nets = discretize.shortlist_of(_views(), 2, 16)
  assert nets == [{"block0/act": "relu", "block1/act": "sin"},
                  {"block0/act": "gelu", "block1/act": "sin"},
                  {"block0/act": "relu", "block1/act": "gelu"},
                  {"block0/act": "gelu", "block1/act": "gelu"}]
  assert discretize.shortlist_of(_views(), 3, 2) == nets[:2]


def test_shortlist_chooses_the_best_trained_network_not_the_largest_weights():
  trained = {("relu", "sin"): 0.80, ("gelu", "sin"): 0.70, ("relu", "gelu"): 0.60,
             ("gelu", "gelu"): 0.90}
  asked = []

  def train_and_score(nets):
    asked.append(nets)
    return [trained[(n["block0/act"], n["block1/act"])] for n in nets], 1.5
  ctx = discretize.Context(train_and_score=train_and_score, score_name="val accuracy",
                           shortlist_k=2, shortlist_max=16)
  layers, info = discretize.shortlist(_views(), ctx)
  assert [layer["choice"] for layer in layers] == ["gelu", "gelu"]
  assert layers[0]["scores"] == {"relu": 0.80, "gelu": 0.90}  # best network using each
  assert layers[1]["scores"] == {"sin": 0.80, "gelu": 0.90}
  assert info["seconds"] == 1.5 and len(info["evaluated"]) == 4 and len(asked) == 1


def test_screen_trains_each_candidate_alone_then_the_best_screened_combinations():
  # alone: sin best, then gelu, then relu; the weights would have said relu and sin
  alone = {"relu": 0.70, "gelu": 0.80, "sin": 0.85}
  pairs = {("sin", "gelu"): 0.90, ("gelu", "sin"): 0.82}
  asked = []

  def train_and_score(nets):
    asked.append(nets)
    out = []
    for n in nets:
      a, b = n["block0/act"], n["block1/act"]
      out.append(alone[a] if a == b else pairs[(a, b)])
    return out, 0.5
  ctx = discretize.Context(train_and_score=train_and_score, score_name="val accuracy",
                           shortlist_k=2, shortlist_max=16)
  layers, info = discretize.screen(_views(), ctx)
  assert [len(a) for a in asked] == [1, 1, 1, 2]  # one network per call while screening
  assert [a[0]["block0/act"] for a in asked[:3]] == list(CANDS)
  assert [layer["choice"] for layer in layers] == ["sin", "gelu"]
  assert layers[0]["scores"] == alone
  assert info["method"] == "screen" and info["screened"] == 3 and info["shortlisted"] == 4
  assert len(info["evaluated"]) == 5  # 3 screened + 2 mixed; the uniform pairs not again
  assert "decided by screen, not the weights" in architecture.table(
      architecture.make(layers, candidates=list(CANDS), relaxation="softmax",
                        granularity="layer", model={}, data={}, metrics={}, seed=0,
                        discretize="screen", selection=info))


# one slot: gaussian and sin are fixed, pau carries 10 learned coefficients
PAU = np.zeros(10)
ONE_SLOT = [discretize.SlotView("s", np.array([0.2, 0.3, 0.5]), ("gaussian", "sin", "pau"),
                                {"pau": {"num": PAU[:6], "den": PAU[6:]}})]


@pytest.mark.parametrize("scores, errors, rule, expected", [
    # without the rule: the best score
    ({"gaussian": -0.08, "sin": -0.10, "pau": -0.07}, {"pau": 0.02}, False, "pau"),
    # pau's lead (0.01) is within its standard error (0.02): the simplest within, gaussian
    ({"gaussian": -0.08, "sin": -0.10, "pau": -0.07}, {"pau": 0.02}, True, "gaussian"),
    # both fixed ones within: the better of them
    ({"gaussian": -0.08, "sin": -0.075, "pau": -0.07}, {"pau": 0.02}, True, "sin"),
    # a lead beyond one standard error stands
    ({"gaussian": -0.08, "sin": -0.10, "pau": -0.05}, {"pau": 0.02}, True, "pau"),
    # one initialisation: no standard error, the best score
    ({"gaussian": -0.08, "sin": -0.10, "pau": -0.07}, {}, True, "pau"),
    # the best is fixed: nothing simpler to prefer
    ({"gaussian": -0.06, "sin": -0.10, "pau": -0.07}, {"gaussian": 0.05}, True, "gaussian"),
])
def test_the_one_standard_error_rule_prefers_the_fewest_learned_parameters(scores, errors,
                                                                           rule, expected):
  def train_and_score(nets):
    return [scores[n["s"]] for n in nets], 0.1
  ctx = discretize.Context(train_and_score=train_and_score, score_name="minus val loss",
                           shortlist_k=3, shortlist_max=16, simplest_within_se=rule,
                           standard_error=lambda net: errors.get(net["s"], 0.0))
  for method in (discretize.screen, discretize.shortlist):
    layers, info = method(ONE_SLOT, ctx)
    assert layers[0]["choice"] == expected
    best = max(scores, key=scores.get)
    if expected == best:
      assert "simpler" not in info
    else:
      assert info["simpler"] == {"rule": "one standard error", "best": {"s": best},
                                 "best_score": scores[best], "standard_error": errors[best],
                                 "best_parameters": 10, "parameters": 0}
      arch = architecture.make(layers, candidates=list(ONE_SLOT[0].candidates),
                               relaxation="softmax", granularity="layer", model={}, data={},
                               metrics={}, seed=0, discretize=info["method"], selection=info)
      assert "one-standard-error rule: the best score, pau -0.07 (10 learned activation " \
             "parameters)" in architecture.table(arch)


def test_a_diverged_best_leaves_the_rule_out():
  nets = [{"s": "pau"}, {"s": "gaussian"}]
  ctx = discretize.Context(simplest_within_se=True, standard_error=lambda net: 1.0)
  assert discretize.choose(ONE_SLOT, nets, [-np.inf, np.nan], ctx) == (0, None)


def test_activation_parameters_count_the_chosen_candidates_parameters():
  views = [*ONE_SLOT, discretize.SlotView("t", np.array([0.5, 0.5]), ("prelu", "relu"),
                                          {"prelu": {"slope": np.zeros(25)}})]
  assert discretize.activation_parameters(views, {"s": "pau", "t": "prelu"}) == 35
  assert discretize.activation_parameters(views, {"s": "sin", "t": "relu"}) == 0


def test_screened_shortlist_orders_by_the_sum_of_scores_and_a_missing_candidate_keeps_the_top():
  views = [discretize.SlotView("a", np.array([0.5, 0.5]), ("relu", "sin"), {}),
           discretize.SlotView("b", np.array([0.9, 0.1]), ("gelu", "relu"), {})]
  nets = discretize.screened_shortlist(views, {"relu": 0.5, "sin": 0.9, "gelu": 0.7}, 2, 3)
  assert nets == [{"a": "sin", "b": "gelu"}, {"a": "sin", "b": "relu"},
                  {"a": "relu", "b": "gelu"}]
  assert discretize.uniform_network(views, "sin") == {"a": "sin", "b": "gelu"}


def test_perturbation_chooses_the_candidate_whose_removal_hurts_most():
  loss = {("block0/act", "relu"): 0.5, ("block0/act", "gelu"): 0.9, ("block0/act", "sin"): 0.4,
          ("block1/act", "relu"): 0.3, ("block1/act", "gelu"): 0.2, ("block1/act", "sin"): 0.25}
  ctx = discretize.Context(removal_loss=lambda removed: loss[next(iter(removed.items()))])
  layers, info = discretize.perturbation(_views(), ctx)
  assert [layer["choice"] for layer in layers] == ["gelu", "relu"]
  assert layers[0]["scores"]["sin"] == 0.4 and info["evaluated"] == 6


def test_an_unknown_method_is_a_user_error():
  with pytest.raises(UserError, match="search.discretize is 'best'; known: argmax"):
    discretize.get("best")


@pytest.mark.parametrize("name", list(activations.DEFAULT) + ["square", "identity"])
def test_normalised_candidates_have_zero_mean_and_unit_second_moment(name):
  cand = activations.get(name)
  (mu,), (sigma,) = standard_moments([cand])
  z = np.random.default_rng(0).normal(size=400_000).astype(np.float32)
  g = (np.asarray(cand.fn(jnp.asarray(z))) - mu) / sigma
  assert abs(g.mean()) < 0.01 and abs(np.mean(g * g) - 1.0) < 0.02


def test_a_normalised_pinned_slot_computes_the_normalised_candidate_and_clamps():
  slot = MixedActivation(["relu", "gaussian"], channels=4, normalize=True, clamp=1.5,
                         rngs=nnx.Rngs(0))
  slot.alpha[...] = jnp.array([-1e4, 1e4])
  x = jnp.linspace(-3, 3, 40).reshape(10, 4)
  (_, mu), (_, sigma) = standard_moments(slot.candidates)
  want = np.clip((np.exp(-np.asarray(x) ** 2) - mu) / sigma, -1.5, 1.5)
  np.testing.assert_allclose(np.asarray(slot(x)), want, rtol=1e-5, atol=1e-6)
  assert float(jnp.max(jnp.abs(slot(10 * x)))) <= 1.5


# the MLP experiment's learning curve off: a quarter of 240 train examples is under a batch
TINY = ["--set", "search.strategy=darts",
        "--set", "data.num_samples=600", "--set", "data.num_test=0",
        "--set", "search.learning_curve=false",
        "--set", "model.widths=[16,12]", "--set", "search.batch_size=32",
        "--set", "search.epochs=2", "--set", 'search.candidates=["default"]',
        "--no-progress"]


# The slow tier (about 30 s each, compilation-bound); the screen and the shortlist are checked
# on a fake context in the fast tier, and the fast tier's other searches run the default screen.
@pytest.mark.slow
@pytest.mark.parametrize("method", ["perturbation", "shortlist", "screen"])
def test_each_method_through_the_search_records_scores_and_shows_them(method, tmp_path, capsys,
                                                                      monkeypatch):
  from actsearch.train import trainer
  real, calls = trainer.fit, []

  def fit(*args, **kwargs):  # the screen's second network (gelu's) diverges
    calls.append(1)
    if method == "screen" and len(calls) == 2:
      raise FloatingPointError("non-finite loss at step 0 (epoch 1)")
    return real(*args, **kwargs)
  monkeypatch.setattr(trainer, "fit", fit)
  workdir = tmp_path / method
  assert cli.main(["search", "--config", os.path.join(ROOT, "experiments/mnist1d_mlp.py"),
                   "--workdir", str(workdir), *TINY, "--set", f"search.discretize={method}",
                   "--set", "search.shortlist_epochs=1", "--set", "search.normalize=true",
                   "--set", "search.shortlist_k=2", "--set", "search.shortlist_seeds=1",
                   "--set", 'search.candidates=["relu","gelu","sin"]']) == 0
  arch = architecture.load(str(workdir / "architecture.json"))
  assert arch["discretize"] == method and arch["selection"]["method"] == method
  for layer in arch["layers"]:
    scores = layer["scores"]
    if method == "perturbation":
      assert set(scores) == set(arch["candidates"])
      assert layer["choice"] == max(scores, key=scores.get)
    elif method == "screen":  # every candidate's own network; the diverged one ranks last
      assert set(scores) == set(arch["candidates"])
      assert scores["gelu"] == -np.inf and layer["choice"] != "gelu"
    else:
      assert len(scores) == 2 and layer["choice"] in scores
  if method in ("shortlist", "screen"):
    evaluated = arch["selection"]["evaluated"]
    k = len(arch["candidates"])
    assert len(evaluated) == (4 if method == "shortlist" else k + 2)  # 2 x 2, less 2 uniform
    # one call for the shortlist; the screen: one per candidate, then the mixed pair at once
    assert len(calls) == (1 if method == "shortlist" else k + 1)
    best = max(evaluated, key=lambda e: e["score"])
    assert {layer["name"]: layer["choice"] for layer in arch["layers"]} == best["choices"]
    # the shortlist's training, in a run directory of the trainer keyed by what it trains
    # (the diverged network's call stopped before the trainer made one), each network's
    # TensorBoard run named by its candidates
    runs = list((workdir / "selection").iterdir())
    assert len(runs) == (1 if method == "shortlist" else k)
    named = {p.name for run in runs for p in run.iterdir() if p.is_dir() and "=" in p.name
             or p.name in arch["candidates"]}
    assert named, [p.name for p in runs[0].iterdir()]
    if method == "screen":
      assert {"relu", "sin"} <= named
  out = capsys.readouterr().out
  assert f"discretize: {method}, score = " in out
  assert {"arch_weights.png", "chosen_activations.png"} <= set(os.listdir(workdir))
  assert json.loads((workdir / "config.json").read_text())["search"]["normalize"] is True


def test_the_shrinking_schedule_leaves_one_candidate_at_the_given_share_of_the_epochs():
  from actsearch.strategies.selection import alive_after
  left = [alive_after(e, 8, 40, 0.75) for e in range(41)]
  assert left[0] == 8 and left[29] == 2 and left[30] == 1 and left[40] == 1
  assert all(a >= b for a, b in zip(left, left[1:]))


def test_temperature_annealing_is_geometric_and_reaches_the_slots():
  import jax

  from actsearch.strategies import bilevel
  sched = bilevel.temperature_schedule(2.0, 0.5, 100)
  assert float(sched(0)) == pytest.approx(2.0) and float(sched(100)) == pytest.approx(0.5)
  assert float(sched(50)) == pytest.approx(1.0)
  assert bilevel.temperature_schedule(1.0, None, 10) is None
  slot = MixedActivation(["relu", "sin"], channels=2, rngs=nnx.Rngs(0))
  _, _, _, rest = split_model(slot)
  rest = bilevel.set_temperature(rest, 0.25)
  assert [float(x) for x in jax.tree.leaves(rest)] == [0.25]


def test_progressive_shrinking_ends_the_search_with_the_discrete_network(tmp_path):
  workdir = tmp_path / "shrink"
  assert cli.main(["search", "--config", os.path.join(ROOT, "experiments/mnist1d_mlp.py"),
                   "--workdir", str(workdir), *TINY[:-1], "--set", "search.epochs=4",
                   "--set", "search.discretize=argmax", "--set", "search.shrink=true",
                   "--set", "search.shrink_until=0.5", "--set", "search.temperature_final=0.3",
                   "--no-progress"]) == 0
  arch = architecture.load(str(workdir / "architecture.json"))
  for layer in arch["layers"]:
    assert layer["weights"][layer["choice"]] == pytest.approx(1.0, abs=1e-6)
    assert sum(w > 1e-6 for w in layer["weights"].values()) == 1


def test_a_shortlisted_network_computes_only_its_candidates_from_the_same_weights():
  from actsearch import data, models
  from actsearch.strategies import supernet
  cfg = usercode.load_config(os.path.join(ROOT, "experiments/mnist1d_mlp.py"))
  configs.apply_overrides(cfg, ["data.num_samples=200", "model.widths=[6,5]"])
  splits = data.load(cfg.data, 0)
  full = supernet.build_supernet(cfg, splits, plain=True, seed=3)
  only = supernet.build_supernet(cfg, splits, plain=True, seed=3,
                              only={"block0/act": ["gelu"], "block1/act": ["relu", "sin"]})
  assert [[c.name for c in slot.candidates] for _, slot in models.slots(only)] == [
      ["gelu"], ["relu", "sin"]]
  def dense(model):  # every parameter but the candidates' own (p_<candidate>__<name>)
    return {k: v for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
            if not str(k[-1]).startswith("p_")}
  a, b = dense(full), dense(only)
  assert set(a) == set(b) and len(a) >= 4
  for path in a:
    np.testing.assert_array_equal(np.asarray(a[path][...]), np.asarray(b[path][...]))


@pytest.mark.parametrize("scores, reduce, expected", [
    ([-0.1, -0.3], "mean", -0.2),
    ([-0.1, -0.3], "best", -0.1),
    ([-0.1, np.nan, -0.3], "best", -0.1),      # a diverged start is ignored by the best
    ([-0.1, -np.inf], "mean", -np.inf),        # and sinks the mean
    ([np.nan, np.nan], "best", -np.inf),
])
def test_a_networks_score_over_its_initialisations(scores, reduce, expected):
  from actsearch.strategies.selection import reduce_seeds
  assert reduce_seeds(scores, reduce) == pytest.approx(expected)


@pytest.mark.parametrize("scores, expected", [
    ([1.0, 2.0, 3.0], 1.0 / np.sqrt(3.0)), ([1.0], 0.0), ([1.0, np.nan, 3.0], 1.0), ([], 0.0)])
def test_the_standard_error_of_a_networks_score(scores, expected):
  from actsearch.strategies.selection import seed_error
  assert seed_error(scores) == pytest.approx(expected)
