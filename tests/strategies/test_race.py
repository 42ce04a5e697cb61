"""The race (``strategies/race.py``) and what it stands on: switch slots that are the retrain's
networks, members taken one after the other with only the active ones computing, the rungs'
halving, a diverged network stopping alone; and the yardstick's ranking of a record."""

import json
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from tensorboard.backend.event_processing import event_accumulator

from actsearch import architecture, configs, models
from actsearch.commands import yardstick
from actsearch.errors import UserError
from actsearch.models import network
from actsearch.strategies import race
from actsearch.train import parallel, step, trainer
from actsearch.train.objective import Objective

from conftest import run_cli

CANDS = ["relu", "gelu", "tanh", "prelu", "pau", "snake"]
MLP = ml_collections.ConfigDict({"name": "mlp", "widths": [6, 5]})


@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_a_switch_network_at_a_candidate_is_that_candidates_fixed_network(granularity):
  # its output and its gradient (the switch's backward pass recomputes its candidate,
  # mixed.switch); the other candidates' parameters get none
  x = jax.random.normal(jax.random.key(0), (7, 4))
  loss = lambda m: jnp.sum(m(x) ** 2)  # noqa: E731
  switch = models.build(MLP, (4,), 3, models.switch_slots(CANDS, granularity), network.rngs(2))
  for i, cand in enumerate(CANDS):
    fixed = models.build(MLP, (4,), 3, models.uniform_slots(cand, granularity),
                         network.rngs(2))
    for _, slot in models.slots(switch):
      slot.index[...] = jnp.int32(i)
    np.testing.assert_allclose(switch(x), fixed(x), rtol=1e-6, atol=1e-6)
    got = dict(nnx.to_flat_state(nnx.grad(loss)(switch)))
    want = dict(nnx.to_flat_state(nnx.grad(loss)(fixed)))
    assert len(want) > 4
    for path, g in want.items():  # the fixed network's parameters: the switch's of cand
      np.testing.assert_allclose(got[path][...], g[...], rtol=1e-5, atol=1e-6, err_msg=cand)
    for path in set(got) - set(want):
      assert not np.any(got[path][...]), (cand, path)


SMALL = ["relu", "tanh", "pau"]


def _stack(cands, seeds=(0,), active=None):
  graphdef, inits = None, {}
  slot = models.switch_slots(SMALL)
  for s in seeds:
    graphdef, inits[s] = step.init_state(models.build(MLP, (4,), 3, slot, network.rngs(s)), None)
  members = [race._with_choice(inits[s], SMALL.index(c)) for c in cands for s in seeds]
  if active is not None:
    members = [m.replace(active=jnp.asarray(a)) for m, a in zip(members, active)]
  return Objective(graphdef, "classification"), trainer.stack(members)


RECIPE = ml_collections.ConfigDict({"optimizer": "adam", "lr": 0.01, "lr_min": 0.0,
                                    "schedule": "constant", "momentum": 0.9,
                                    "weight_decay": 0.0, "grad_clip": 5.0, "epochs": 2,
                                    "batch_size": 16, "eval_batch_size": 64})


def _data(n=64):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  return x, (x[:, 0] > 0).astype(np.int32)


@pytest.mark.parametrize("resident_mb", [1024, 0])  # batches on the devices, or from the host
def test_members_one_after_the_other_train_as_batched_ones(tmp_path, resident_mb):
  x, y = _data()
  obj, state = _stack(["relu", "tanh", "pau"])
  a, _ = trainer.fit(RECIPE, obj, state, x, y, str(tmp_path / "v"), [0, 1, 2], list("abc"),
                     progress=False)
  b, _ = trainer.fit(RECIPE, obj, state, x, y, str(tmp_path / "m"), [0, 1, 2], list("abc"),
                     progress=False, members="map", resident_mb=resident_mb)
  for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(u, v, rtol=2e-5, atol=2e-6)
  sa = trainer.score(obj, a, x, y, 64, "t")
  sb = trainer.score(obj, b, x, y, 64, "t", "map")
  np.testing.assert_allclose(sa["t/loss"], sb["t/loss"], rtol=1e-5)
  # an evaluator moved to another split scores as one built for it
  ev = trainer.evaluator(obj, x[:40], y[:40], 16, "val", "map")
  other = ev.over(x[40:], y[40:], "t")(parallel.replicate(b))
  np.testing.assert_allclose(other["t/loss"], trainer.score(obj, b, x[40:], y[40:], 16, "t",
                                                            "map")["t/loss"], rtol=1e-6)


def test_an_inactive_member_takes_no_step_and_a_diverged_one_stops_alone(tmp_path):
  x, y = _data()
  obj, state = _stack(["relu", "tanh", "pau"], active=[True, False, True])
  # the third network's weights are not finite: its first step is, and it stops there
  def poisoned(v):
    v = np.array(v)
    v[2] = np.nan
    return v
  state = state.replace(params=jax.tree.map(poisoned, state.params))
  out, _ = trainer.fit(RECIPE, obj, state, x, y, str(tmp_path / "r"), [0, 0, 0], list("abc"),
                       progress=False, members="map")
  moved = [not np.array_equal(u[i], v[i], equal_nan=True)
           for u, v in zip(jax.tree.leaves(out.params), jax.tree.leaves(state.params))
           for i in (0, 1, 2)]
  assert any(moved[0::3]) and not any(moved[1::3]) and not any(moved[2::3])
  assert list(np.asarray(out.active)) == [True, False, False]
  scores = trainer.score(obj, out, x, y, 64, "t", "map")
  assert scores["t/loss"][1] == 0.0 and scores["t/loss"][0] > 0.0


def test_the_next_cycle_holds_the_survivors_and_goes_on_from_their_weights():
  # cycle 1's networks (every candidate), their weights moved as if trained; cycle 2 keeps
  # pau and tanh: its graph switches over those two only, and each network computes what it
  # computed at the end of cycle 1
  cfg = ml_collections.ConfigDict({"model": MLP, "search": {"granularity": "channel"}})
  splits = types.SimpleNamespace(input_shape=(4,), num_outputs=3)
  graphdef, first = race._members(cfg, splits, SMALL, [0], {})
  moved = {m: st.replace(params=jax.tree.map(lambda v: v + 0.1, st.params))
           for m, st in first.items()}
  graphdef2, second = race._members(cfg, splits, ["pau", "tanh"], [0], moved)
  x = jax.random.normal(jax.random.key(1), (5, 4))
  out = lambda g, st: nnx.merge(g, st.params, st.arch, st.rest)(x)  # noqa: E731
  for c in ("pau", "tanh"):
    np.testing.assert_array_equal(out(graphdef2, second[c, 0]), out(graphdef, moved[c, 0]))
    assert second[c, 0].opt is None and int(second[c, 0].step) == 0  # a fresh optimizer
  slots = models.slots(nnx.merge(graphdef2, second["pau", 0].params, second["pau", 0].arch,
                                 second["pau", 0].rest))
  assert all([c.name for c in slot.candidates] == ["pau", "tanh"] for _, slot in slots)


@pytest.mark.parametrize("scores, alive, keep, want", [
    ({"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}, ["a", "b", "c", "d"], 2, ["a", "b"]),
    ({"a": 0.1, "b": float("-inf"), "c": 0.7}, ["a", "b", "c"], 2, ["c", "a"]),
    ({"a": 0.5, "b": 0.5}, ["a", "b"], 1, ["a"]),                         # ties: the order
    ({"a": float("nan"), "b": 0.2}, ["a", "b"], 1, ["b"]),                # diverged last
    ({"a": 0.5, "b": 0.2}, ["a", "b"], 5, ["a", "b"]),
])
def test_a_cycle_keeps_the_best(scores, alive, keep, want):
  assert race.survivors(scores, alive, keep) == want


CYCLE = {"scores": {"a": 0.9, "b": 0.8, "c": 0.7},
         "train_loss": {"a": 0.5, "b": 0.1, "c": float("inf")}}  # c diverged


@pytest.mark.parametrize("cut, keep, want", [
    ("val", 2, ["a", "b"]),
    ("train_loss", 2, ["b", "a"]),        # the lowest loss on the train split first
    ("train_loss", 3, ["b", "a", "c"]),   # a diverged network last
])
def test_a_cut_ranks_by_its_signal(cut, keep, want):
  assert race.survivors(race.cut_scores(CYCLE, cut), ["a", "b", "c"], keep) == want


@pytest.mark.parametrize("settings, message", [
    ({"cut": "val_loss"}, "search.race.cut must be one of val, train_loss, got 'val_loss'"),
    ({"epochs": []}, "search.race.epochs must be a non-empty list"),
    ({"keep": [4, 2]}, "search.race.keep must give, for each cycle but the last"),
    ({"keep": [0]}, "search.race.keep must give"),
    ({"seeds": 0}, "search.race.seeds must be a positive integer"),
])
def test_bad_race_settings_are_one_user_error(settings, message):
  cfg = configs.base_config()
  cfg.search.strategy = "race"
  cfg.search.race.update(settings)
  with pytest.raises(UserError, match=message):
    race.check(cfg)


def test_a_race_keeps_the_best_after_each_cycle(tmp_path, in_process):
  sets = ["data.num_samples=600", "data.num_test=0", "model.widths=[16]",
          "search.strategy=race", 'search.candidates=["relu","tanh","gelu","sin"]',
          "search.race.epochs=[1,1,2]", "search.race.keep=[2,1]", "retrain.batch_size=40"]
  proc = in_process("search", "--config", "experiments/mnist1d_mlp.py", "--workdir",
                    tmp_path / "run", "--no-progress", *[a for s in sets for a in ("--set", s)])
  assert proc.returncode == 0, proc.stderr
  arch = architecture.load(str(tmp_path / "run" / "architecture.json"))
  log = json.loads((tmp_path / "run" / "race.json").read_text())
  assert [len(g["scores"]) for g in log["cycles"]] == [4, 2, 1]
  # each network's loss on the train split is recorded beside its val score
  assert all(set(g["train_loss"]) == set(g["scores"]) and
             all(0 < v < 10 for v in g["train_loss"].values()) for g in log["cycles"])
  sel = arch["selection"]
  assert sel["method"] == "race" and max(sel["rounds"].values()) == 2
  assert arch["layers"][0]["choice"] == log["cycles"][-1]["kept"][0] == log["cycles"][1]["kept"][0]
  # examples: 4 networks for 1 epoch, 2 for 1, 1 for 2; 240 train examples, batch 40
  assert arch["strategy"]["cost"]["examples"] == (4 + 2 + 2) * 6 * 40
  shown = architecture.table(arch)
  assert "race: 4 for 1 epochs -> 2 for 1 epochs -> 1 for 2 epochs" in shown
  assert "cost: 1,920 training examples, 4 networks trained" in shown
  # TensorBoard: every network's run named by its cycle and candidate, and the result as text
  acc = event_accumulator.EventAccumulator(str(tmp_path / "run"))
  acc.Reload()
  text = [t for t in acc.Tags()["tensors"] if t.startswith("search/result")]
  assert text, acc.Tags()
  assert b"race: 4 for 1 epochs" in acc.Tensors(text[0])[-1].tensor_proto.string_val[0]
  assert {"race/tanh", "race_train_loss/tanh"} <= set(acc.Tags()["scalars"])
  assert (tmp_path / "run" / "race" / "cycle1" / "tanh" / "seed0").is_dir()
  ranked = yardstick.ranking(arch)
  assert ranked[arch["layers"][0]["choice"]] == max(ranked.values())
  # a resumed race (its file and checkpoints there) trains nothing again and ends the same
  proc = in_process("search", "--config", "experiments/mnist1d_mlp.py", "--workdir",
                    tmp_path / "run", "--no-progress", *[a for s in sets for a in ("--set", s)])
  assert proc.returncode == 0, proc.stderr
  again = architecture.load(str(tmp_path / "run" / "architecture.json"))
  assert again["layers"] == arch["layers"] and again["selection"]["cycles"] == sel["cycles"]


@pytest.mark.parametrize("layers, rounds, want", [
    ([{"candidates": ["a", "b", "c"], "scores": {"a": 1.0, "b": 3.0, "c": 2.0}}], {},
     {"a": 0.0, "b": 2.0, "c": 1.0}),
    # two slots: the mean place; an unscored candidate below every scored one
    ([{"candidates": ["a", "b"], "scores": {"a": 1.0, "b": 3.0}},
      {"candidates": ["a", "b"], "scores": {"a": 5.0}}], {}, {"a": 0.5, "b": 0.5}),
    # a race: the round first (b went further with a lower score)
    ([{"candidates": ["a", "b", "c"], "scores": {"a": 0.9, "b": 0.8, "c": 0.8}}],
     {"a": 0, "b": 1, "c": 0}, {"a": 1.0, "b": 2.0, "c": 0.0}),
])
def test_the_yardstick_ranks_a_records_candidates(layers, rounds, want):
  record = {"layers": layers, "selection": {"rounds": rounds}}
  assert yardstick.ranking(record) == want


TRUE = {"best": "a", "mean": {"a": 0.90, "b": 0.89, "c": 0.85}, "standard_error": {"a": 0.02}}


@pytest.mark.parametrize("chosen, want", [
    ({"s0": "a", "s1": "a"}, True),
    ({"s0": "b", "s1": "b"}, True),     # 0.01 below the best, whose SE is 0.02
    ({"s0": "c", "s1": "c"}, False),
    ({"s0": "a", "s1": "b"}, None),     # not one of the truth's networks
])
def test_a_choice_within_one_standard_error_of_the_truths_best(chosen, want):
  assert yardstick.within_one_se(chosen, TRUE) is want


@pytest.mark.slow
def test_the_race_does_not_hang_on_the_mixture_kernel(tmp_path):
  # the race's networks compute one candidate per slot (no mixture): the searches with the
  # fused mixture's CPU kernel and without it measure the same scores, bit for bit
  sets = ["data.num_samples=1000", "data.num_test=0", "search.race.epochs=[2,2]",
          "search.race.keep=[3]"]
  logs = []
  for kernels in ("0", "1"):
    proc = run_cli("search", "--config", "experiments/mnist1d_cnn.py", "--workdir",
                   str(tmp_path / kernels), "--no-progress",
                   *[a for s in sets for a in ("--set", s)], env={"ACTSEARCH_KERNELS": kernels})
    assert proc.returncode == 0, proc.stderr
    logs.append(json.loads((tmp_path / kernels / "race.json").read_text()))
  assert logs[0] == logs[1] and len(logs[0]["cycles"][0]["scores"]) == 16
