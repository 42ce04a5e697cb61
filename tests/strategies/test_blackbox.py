"""The black-box strategies' parts: the cache and its budget, the moves of each algorithm, and
the algorithms on the planted teacher, whose 512 networks' short-training val losses are a
fixture (measured once by ``experiments/planted.py``; read here through the trainer's
interface instead of training)."""

import itertools
import json
import math
import os

import numpy as np
import pytest

from actsearch.strategies import blackbox, evolution, random_search, reinforce

from conftest import ROOT

SPACE = blackbox.Space(("a", "b", "c"), (("x", "y"), ("x", "y", "z"), ("x",)))
FIXTURE = os.path.join(ROOT, "tests/fixtures/planted.json")
ALGORITHMS = {"random": random_search.search, "evolution": evolution.search,
              "reinforce": reinforce.search}


def counting(scores):
  """A trainer that scores networks by ``scores`` and counts what it trained."""
  trained = []

  def train(nets):
    trained.extend(nets)
    return [scores(n) for n in nets]
  return train, trained


def test_the_space_enumerates_indexes_and_draws_its_networks():
  assert SPACE.size == 6
  rng = np.random.default_rng(0)
  draws = {SPACE.random(rng) for _ in range(200)}
  assert draws == set(itertools.product(range(2), range(3), range(1)))
  assert SPACE.choices((1, 2, 0)) == {"a": "y", "b": "z", "c": "x"}
  assert SPACE.index({"a": "y", "b": "z", "c": "x"}) == (1, 2, 0)


def test_a_network_seen_before_is_neither_trained_nor_counted():
  train, trained = counting(lambda n: float(sum(n)))
  evals = blackbox.Evaluations(train, trainings=3)
  assert evals.evaluate([(0, 0, 0), (1, 0, 0), (0, 0, 0)]) == [0.0, 1.0, 0.0]
  assert trained == [(0, 0, 0), (1, 0, 0)]  # the repeat within one call trained once
  assert evals.evaluate([(1, 0, 0)]) == [1.0] and len(trained) == 2
  assert (evals.proposals, evals.cached, evals.left) == (4, 2, 1)


def test_the_budget_ends_the_search_after_exactly_its_trainings():
  train, trained = counting(lambda n: float(sum(n)))
  evals = blackbox.Evaluations(train, trainings=2)
  with pytest.raises(blackbox.OutOfBudget):  # three new networks, two allowed: two trained
    evals.evaluate([(0, 0, 0), (0, 1, 0), (0, 2, 0)])
  assert trained == [(0, 0, 0), (0, 1, 0)] and evals.left == 0
  assert evals.evaluate([(0, 1, 0)]) == [1.0]  # the cache still answers
  with pytest.raises(blackbox.OutOfBudget):
    evals.evaluate([(1, 1, 0)])
  assert evals.best() == ((0, 1, 0), 1.0)


def test_known_scores_replay_an_interrupted_run_and_count_as_spent():
  train, trained = counting(lambda n: float(sum(n)))
  seen = []
  evals = blackbox.Evaluations(train, trainings=2, known={(1, 2, 0): 3.0},
                               on_new=lambda n, s: seen.append((n, s)))
  assert evals.evaluate([(1, 2, 0), (0, 0, 0)]) == [3.0, 0.0]
  assert trained == [(0, 0, 0)] and evals.left == 0
  assert seen == [((1, 2, 0), 3.0), ((0, 0, 0), 0.0)]


def test_a_mutation_changes_exactly_one_slot_to_another_candidate():
  rng = np.random.default_rng(0)
  children = set()
  for _ in range(300):
    child = evolution.mutate(SPACE, (0, 1, 0), rng)
    assert sum(a != b for a, b in zip(child, (0, 1, 0))) == 1
    children.add(child)
  assert children == {(1, 1, 0), (0, 0, 0), (0, 2, 0)}  # slot c has one candidate: never


def test_evolution_kills_the_oldest_member_not_the_worst():
  # population 2, tournament 2: the parent is the better member. The first member scores 10,
  # everyone else worse and worse: after cycle 1 aging kills it (oldest) although it is the
  # best, so cycle 2 mutates the second member; killing the worst would mutate the first again
  order = []

  def scores(n):
    order.append(n)
    return 10.0 if len(order) == 1 else -float(len(order))
  space = blackbox.Space(("a", "b"), (tuple("pqrstu"), tuple("pqrstu")))
  evals = blackbox.Evaluations(counting(scores)[0], trainings=4)
  with pytest.raises(blackbox.OutOfBudget):
    evolution.search(space, evals, seed=0, population=2, sample=2)
  dist = lambda u, v: sum(a != b for a, b in zip(u, v))  # noqa: E731
  first, second, child1, child2 = order
  assert dist(child1, first) == 1  # cycle 1: the best, the first member, is the parent
  assert dist(child2, second) == 1 and dist(child2, first) == 2  # cycle 2: the second is


def test_the_policy_gradient_step_is_reinforce_with_its_baseline():
  # two slots, uniform logits, a round of two networks: by hand, d log pi(k) / d theta =
  # onehot(k) - pi, so slot 0 gains (R - b) / sigma * lr / 2 * (e_k - 1/3) per network
  theta = [np.zeros(3), np.array([0.0, np.log(3.0)])]  # slot 1: pi = (1/4, 3/4)
  nets, scores = [(0, 1), (2, 1)], [3.0, 1.0]
  out = reinforce.step(theta, nets, scores, baseline=1.0, sigma=2.0, lr=0.5)
  # advantages (3 - 1) / 2 = 1 and (1 - 1) / 2 = 0: only the first network moves the logits
  np.testing.assert_allclose(out[0], 0.25 * (np.array([1, 0, 0]) - 1 / 3))
  np.testing.assert_allclose(out[1], theta[1] + 0.25 * (np.array([0, 1]) - [0.25, 0.75]))
  assert all(np.array_equal(t, u) for t, u in zip(theta, [np.zeros(3), [0.0, np.log(3.0)]]))


def test_reinforce_moves_its_policy_toward_the_better_network():
  space = blackbox.Space(("a",), (("x", "y", "z"),))
  evals = blackbox.Evaluations(lambda nets: [1.0 if n == (2,) else 0.0 for n in nets], 3)
  reinforce.search(space, evals, seed=0)  # every network evaluated: it stops
  assert evals.best() == ((2,), 1.0) and len(evals.scores) == 3


def test_random_searchs_chance_is_the_hypergeometric_one():
  total, good, draws = 12, 2, 4
  nets = range(total)
  hits = [any(n < good for n in c) for c in itertools.combinations(nets, draws)]
  assert random_search.chance_of_finding(total, good, draws) == pytest.approx(np.mean(hits))
  assert random_search.chance_of_finding(total, good, total - good + 1) == 1.0


# --- the planted teacher ------------------------------------------------------------------

def planted():
  with open(FIXTURE, encoding="utf-8") as f:
    fx = json.load(f)
  cands = tuple(fx["candidates"])
  space = blackbox.Space(tuple(fx["slots"]), (cands,) * len(fx["slots"]))
  scores = {space.index(dict(zip(space.names, k.split("/")))): v
            for k, v in fx["scores"].items()}
  teacher = space.index(dict(zip(space.names, fx["teacher"])))
  return space, scores, teacher


def good_networks(scores, teacher):
  """Those within 10% of the teacher architecture's own loss (scores are minus the loss)."""
  return {n for n, s in scores.items() if -s <= 1.1 * -scores[teacher]}


def test_the_planted_fixture_holds_every_network_and_few_good_ones():
  space, scores, teacher = planted()
  assert len(scores) == space.size == 512 and all(np.isfinite(list(scores.values())))
  good = good_networks(scores, teacher)
  assert teacher in good and len(good) <= 0.01 * 512, len(good)


def run_on_fixture(name, seed, trainings=50):
  space, scores, _ = planted()
  evals = blackbox.Evaluations(lambda nets: [scores[n] for n in nets], trainings)
  try:
    ALGORITHMS[name](space, evals, seed)
  except blackbox.OutOfBudget:
    pass
  return evals


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_algorithm_spends_its_budget_in_distinct_trainings(name):
  # or stops once it proposes only networks it has seen (a converged policy)
  evals = run_on_fixture(name, seed=0)
  assert len(evals.scores) == 50 or (
      len(evals.scores) < 50 and evals.proposals >= evolution.PROPOSALS_PER_TRAINING * 50)
  assert evals.proposals >= len(evals.scores)


def test_evolution_and_reinforce_find_the_planted_answer_and_beat_random():
  space, scores, teacher = planted()
  good = good_networks(scores, teacher)
  best = max(scores.values())
  found, regret = {}, {}
  for name in ALGORITHMS:
    runs = [run_on_fixture(name, seed) for seed in range(10)]
    found[name] = sum(r.best()[0] in good for r in runs)
    regret[name] = float(np.mean([blackbox.regret(r, best) for r in runs]))
  chance = random_search.chance_of_finding(space.size, len(good), 50)
  print(f"good networks {len(good)} of 512; random's exact chance with 50 distinct draws "
        f"{chance:.3f}; found (of 10): {found}; mean regret: {regret}")
  assert found["evolution"] >= 8 and found["reinforce"] >= 8, found
  assert regret["evolution"] < regret["random"] and regret["reinforce"] < regret["random"]
  assert math.isclose(chance, 1 - math.comb(512 - len(good), 50) / math.comb(512, 50))


def test_three_entries_of_the_planted_fixture_retrain_to_their_scores(tmp_path):
  # the teacher's own network, its best neighbour and a poor one, trained again by the
  # script's engine path (together, as one chunk of three instead of 64)
  import importlib.util
  spec = importlib.util.spec_from_file_location("planted", os.path.join(ROOT,
                                                                        "experiments/planted.py"))
  planted_script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(planted_script)
  with open(FIXTURE, encoding="utf-8") as f:
    fx = json.load(f)["scores"]
  entries = [("sin", "square", "tanh"), ("sin", "square", "gaussian"), ("relu", "relu", "relu")]
  got = planted_script.measure(entries, str(tmp_path))
  for net, score in zip(entries, got):
    assert score == pytest.approx(fx["/".join(net)], rel=0.02), net
  assert got[0] > got[1] > got[2]
