"""A user's model as Flax's guides write it (batch norm, dropout, layer norm, attention,
``nnx.List`` and ``nnx.Dict``, ``model.train()`` / ``model.eval()`` or a ``train`` argument),
through every command and strategy: search, apply, retrain, trained; on one and two devices;
killed and resumed; and a batch statistic that overflows."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import actsearch
from actsearch import architecture, data, usercode
from actsearch.models import network, registry
from actsearch.train.checkpoint import Checkpointer

from conftest import (
  ROOT,
  assert_bad_input,
  assert_devices_agree,
  checkpoint_state,
  pause_and_kill,
  run_cli,
)

EXAMPLE = os.path.join(ROOT, "experiments", "own_residual.py")
own_residual = usercode.import_code(EXAMPLE)  # the example a user copies, as --config loads it
KINDS = {"own_residual": own_residual.ResidualMLP,
         "own_residual_train_arg": own_residual.ResidualMLPTrainArg}


def _small(name):
  cfg = actsearch.config(EXAMPLE)
  cfg.model.name = name
  cfg.search.epochs, cfg.search.discretize = 1, "argmax"
  cfg.search.candidates = ["relu", "tanh", "prelu"]
  return cfg


def _reference(model, acts, x):
  """The residual MLP's eval-mode forward pass in plain jax, from its weights and running
  averages (batch norm), dropout off."""
  def dense(layer, h):
    return h @ layer.kernel[...] + layer.bias[...]

  def norm(layer, h):
    return (h - layer.mean[...]) / jnp.sqrt(layer.var[...] + layer.epsilon) * layer.scale[...] \
        + layer.bias[...]

  def layer_norm(layer, h):
    mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    return (h - mean) / jnp.sqrt(var + layer.epsilon) * layer.scale[...] + layer.bias[...]
  h = acts[0](dense(model.stem, x))
  for block, act in zip(model.blocks, acts[1:]):
    h = h + act(norm(block.bn, dense(block.linear, h)))
  return dense(model.head, layer_norm(model.norm, h))


FNS = {"relu": jax.nn.relu, "tanh": jnp.tanh}


def _acts(model):
  """Each slot's function as the model holds it (prelu with the slope it holds), in the
  order of the slots."""
  out = []
  for _, slot in registry.slots(model):
    choice = slot.candidates[0].name
    if choice == "prelu":
      slope = float(np.asarray(slot.candidate_params()["prelu"]["slope"]).ravel()[0])
      out.append(lambda v, s=slope: jnp.where(v > 0, v, s * v))
    else:
      out.append(FNS[choice])
  return out


def _chain(tmp_path, name):
  """Search from Python, apply to a model the test builds, retrain, trained: the eval-mode
  outputs of each are those of a plain forward pass with the chosen functions and the model's
  running averages."""
  cfg = _small(name)
  record = actsearch.search(cfg, str(tmp_path / "run"))
  assert [layer["name"] for layer in record["layers"]] == ["stem", "blocks/0/act",
                                                           "blocks/1/act"]
  x = jnp.asarray(data.digits(0)["x_test"][:16], jnp.float32)
  mine = KINDS[name](input_shape=(64,), num_outputs=10, rngs=nnx.Rngs(3))
  mine.train()
  applied = actsearch.apply(record, mine)
  assert applied.blocks[0].bn.use_running_average is False  # the mode the user left it in
  applied.eval()
  out = applied(x) if name == "own_residual" else applied(x, train=False)
  np.testing.assert_allclose(out, _reference(applied, _acts(applied), x), rtol=1e-5,
                             atol=1e-5)

  report = actsearch.retrain(str(tmp_path / "run" / "architecture.json"), seeds=1, epochs=1,
                             baselines=["relu"])
  net = actsearch.trained(str(tmp_path / "run" / "retrain"), "found", seed=0)
  assert isinstance(net, KINDS[name])
  assert net.blocks[0].bn.use_running_average is True and net.blocks[0].dropout.deterministic
  moved = np.asarray(net.blocks[0].bn.var[...])
  assert not np.allclose(moved, 1.0)  # the retrain's running averages, loaded
  digits = data.digits(0)
  xs = jnp.asarray(digits["x_test"], jnp.float32)
  logits = net(xs) if name == "own_residual" else net(xs, train=False)
  accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == digits["y_test"]))
  assert abs(accuracy - report["variants"]["found"]["seeds"][0]["test_accuracy"]) < 1e-6
  np.testing.assert_allclose(logits[:16], _reference(net, _acts(net), x), rtol=1e-5,
                             atol=1e-5)


def test_a_residual_mlp_by_flax_switch_searches_applies_retrains_and_comes_back(tmp_path):
  _chain(tmp_path, "own_residual")


@pytest.mark.slow  # the same chain with the mode passed as an argument
def test_a_residual_mlp_with_a_train_argument_alike(tmp_path):
  _chain(tmp_path, "own_residual_train_arg")


class Attention(nnx.Module):
  """A pre-norm transformer block: attention with dropout, an MLP in an ``nnx.Dict``."""

  def __init__(self, d, *, rngs):
    self.norm = nnx.LayerNorm(d, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(num_heads=2, in_features=d, dropout_rate=0.1,
                                       decode=False, rngs=rngs)
    self.mlp = nnx.Dict({"up": nnx.Linear(d, 2 * d, rngs=rngs),
                         "down": nnx.Linear(2 * d, d, rngs=rngs)})
    self.drop = nnx.Dropout(0.1, rngs=rngs)

  def __call__(self, x):
    x = x + self.attn(self.norm(x))
    return x + self.drop(self.mlp["down"](actsearch.slot(self, "act", nnx.gelu)(
        self.mlp["up"](x))))


@actsearch.register_model("test_tokens")
class Tokens(nnx.Module):
  def __init__(self, *, input_shape, num_outputs, rngs):
    self.embed = nnx.Linear(input_shape[-1], 8, rngs=rngs)
    self.blocks = nnx.List([Attention(8, rngs=rngs)])
    self.head = nnx.Linear(8, num_outputs, rngs=rngs)

  def __call__(self, x):
    h = self.embed(x)
    for block in self.blocks:
      h = block(h)
    return self.head(h.mean(1))


def test_attention_with_dropout_and_a_dict_searches_and_retrains(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(160, 4, 6)).astype(np.float32)
  y = (x[:, :, 0].sum(1) > 0).astype(np.int64)
  cfg = actsearch.config()
  cfg.model.name = "test_tokens"
  cfg.search.epochs, cfg.search.discretize, cfg.search.batch_size = 1, "argmax", 16
  cfg.search.candidates = ["gelu", "tanh"]
  cfg.retrain.batch_size = 16
  record = actsearch.search(cfg, str(tmp_path / "run"), data={
      "x_train": x[:128], "y_train": y[:128], "x_test": x[128:], "y_test": y[128:]})
  assert [layer["name"] for layer in record["layers"]] == ["blocks/0/act"]
  report = actsearch.retrain(str(tmp_path / "run" / "architecture.json"), seeds=1, epochs=1,
                             baselines=[])
  net = actsearch.trained(str(tmp_path / "run" / "retrain"), "found", seed=0)
  assert net.blocks[0].attn.deterministic and net.blocks[0].drop.deterministic
  out = np.asarray(net(jnp.asarray(x[128:])))
  accuracy = float(np.mean(np.argmax(out, -1) == y[128:]))
  assert abs(accuracy - report["variants"]["found"]["seeds"][0]["test_accuracy"]) < 1e-6


FIRST_NORM = '''
from flax import nnx

import actsearch
from actsearch.configs import base_config


@actsearch.register_model("norm_first")
class NormFirst(nnx.Module):
  def __init__(self, *, input_shape, num_outputs, rngs):
    self.bn = nnx.BatchNorm(input_shape[-1], rngs=rngs)
    self.hidden = nnx.Linear(input_shape[-1], 8, rngs=rngs)
    self.head = nnx.Linear(8, num_outputs, rngs=rngs)

  def __call__(self, x):
    return self.head(actsearch.slot(self, "act", nnx.relu)(self.hidden(self.bn(x))))


def get_config():
  c = base_config()
  c.model.name = "norm_first"
  c.search.epochs, c.search.batch_size, c.search.discretize = 2, 16, "argmax"
  c.search.candidates = ["relu", "tanh"]
  c.search.checkpoint_every = 2
  return c
'''


def test_a_batch_statistic_that_overflows_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path, in_process):
  # one train example large enough that its square overflows float32: the batch variance and
  # the running average are inf, while the normalised outputs and the loss stay finite. 72
  # train examples in batches of 16: each epoch leaves 8 out; the example is one epoch 1
  # leaves out and epoch 2 takes
  rng = np.random.default_rng(0)
  x = rng.normal(size=(168, 3)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int64)
  first, second = data.epoch_order(72, 16, 0, 0), data.epoch_order(72, 16, 0, 2)
  bad = next(4 + i for i, row in enumerate(second) for j in row if j not in first)
  x[next(j for j in second[bad - 4] if j not in first), 1] = 1e25
  np.savez(tmp_path / "d.npz", x_train=x[:72], y_train=y[:72], x_val=x[72:136],
           y_val=y[72:136], x_test=x[136:], y_test=y[136:])
  (tmp_path / "norm_first.py").write_text(FIRST_NORM)
  proc = in_process("search", "--config", tmp_path / "norm_first.py", "--workdir",
                    tmp_path / "run", "--data", tmp_path / "d.npz", "--no-progress")
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 1 and len(lines) == 1, proc.stderr
  last = bad // 2 * 2  # a checkpoint every 2 steps
  assert (f"non-finite state (weights, alpha or batch statistics) at step {bad} (epoch 2); the "
          f"last checkpoint is {'epoch 1' if last == 4 else f'step {last}'}") in lines[0]
  ckpt = Checkpointer(str(tmp_path / "run" / "checkpoints"), read_only=True)
  assert ckpt.latest() == last
  state, _ = ckpt.restore(None)
  ckpt.close()
  assert all(np.isfinite(v).all() for v in jax.tree.leaves(state) if v.dtype.kind == "f")
  assert not (tmp_path / "run" / "architecture.json").exists()
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    steps = [json.loads(line)["step"] for line in f if '"train/loss"' in line]
  assert max(steps) == bad  # the steps before the bad one were logged (1-based), not it


def test_streams_are_what_the_model_is_built_with():
  r = network.rngs(0)
  drop = nnx.Dropout(0.5, rngs=r)
  assert drop.rngs.tag == "dropout"


# The example on digits, small: 718 train / 719 val examples, batch 70 -> 10 steps an epoch.
SETS = ["search.epochs=2", "search.batch_size=70", "search.shortlist_epochs=1",
        'search.candidates=["relu","gelu","tanh"]', "search.learning_curve=false",
        "search.shortlist_k=1", "retrain.batch_size=70", "model.width=16"]


def _search(workdir, *sets):
  return ["search", "--config", EXAMPLE, "--workdir", str(workdir), "--no-progress",
          *[a for s in [*SETS, *sets] for a in ("--set", s)]]


def _state(workdir, *sets):
  return checkpoint_state(workdir, [*SETS, *sets], experiment=EXAMPLE)


@pytest.mark.slow  # a chain of processes
def test_the_example_searches_exports_and_retrains_each_in_its_own_process(tmp_path):
  run = tmp_path / "run"
  proc = run_cli(*_search(run))
  assert proc.returncode == 0, proc.stderr
  arch = architecture.load(str(run / "architecture.json"))
  assert [layer["name"] for layer in arch["layers"]] == ["stem", "blocks/0/act", "blocks/1/act"]
  assert_bad_input(run_cli("export", str(run)), "own_residual", f"--import {EXAMPLE}")
  proc = run_cli("export", str(run), "--import", EXAMPLE)
  assert proc.returncode == 0, proc.stderr
  assert architecture.load(str(run / "architecture.json"))["layers"] == arch["layers"]
  proc = run_cli("retrain", str(run / "architecture.json"), "--import", EXAMPLE, "--seeds", "2",
                 "--epochs", "2", "--workdir", str(tmp_path / "rt"), "--no-progress")
  assert proc.returncode == 0, proc.stderr
  results = json.loads((tmp_path / "rt" / "results.json").read_text())
  assert {"found", "relu", "gelu"} <= set(results["variants"])
  assert results["variants"]["found"]["seeds"][1]["test_accuracy"] > 0.5
  # the retrain's state holds the running averages, the same for each seed's own data order
  state, _ = Checkpointer(str(tmp_path / "rt" / "found" / "checkpoints"),
                          read_only=True).restore(None)
  var = [v for k, v in state.items() if k.endswith("['bn']['var'].value")]
  assert var and not np.allclose(var[0][0], var[0][1])  # seeds 0 and 1 differ


STRATEGY_SETS = {
    "darts_perturbation": ["search.discretize=perturbation"],
    "darts_screen": [],
    "random": ["search.strategy=random", "search.budget=1400"],
    "evolution": ["search.strategy=evolution", "search.budget=1400",
                  "search.evolution.population=1", "search.evolution.sample=1"],
    "reinforce": ["search.strategy=reinforce", "search.budget=1400"],
    "correlation": ["search.strategy=correlation", "search.correlation.rounds=1",
                    "search.correlation.round_epochs=1"],
    "random_activation": ["search.strategy=random_activation", "search.shortlist_max=4"],
}


@pytest.mark.slow  # seven searches of a batch-norm, dropout model
@pytest.mark.parametrize("strategy", STRATEGY_SETS)
def test_every_strategy_searches_a_model_with_batch_norm_and_dropout(strategy, tmp_path,
                                                                     in_process):
  proc = in_process(*_search(tmp_path / "run", *STRATEGY_SETS[strategy]))
  assert proc.returncode == 0, proc.stderr
  arch = architecture.load(str(tmp_path / "run" / "architecture.json"))
  assert len(arch["layers"]) == 3 and arch["strategy"]["cost"]["examples"] > 0
  if strategy in ("darts_perturbation", "random_activation"):  # scored on the supernet
    scores = [v for layer in arch["layers"] for v in layer["scores"].values()]
    assert all(np.isfinite(scores)) and len(set(scores)) > 1


@pytest.mark.slow  # one process per device count
def test_a_batch_norm_search_agrees_on_one_and_two_devices(tmp_path):
  sets = ["model.dropout=0.0", "search.discretize=argmax"]  # the masks differ by device
  states = {}
  for n in (1, 2):
    proc = run_cli(*_search(tmp_path / f"d{n}", *sets),
                   env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"})
    assert proc.returncode == 0, proc.stderr
    states[n] = _state(tmp_path / f"d{n}", *sets)[0]
  assert int(states[1].step) == 20
  stats = assert_devices_agree(states[1], states[2])
  assert len(stats) == 4 and not np.allclose(stats[1][...], 1.0)  # the running variances moved


@pytest.mark.slow  # a chain of three processes
def test_a_batch_norm_search_with_dropout_killed_at_a_step_resumes_bit_identical(tmp_path):
  sets = ["search.checkpoint_every=5", "search.discretize=argmax"]
  pause_and_kill(_search(tmp_path / "cut", *sets), str(tmp_path / "marker"), step=13)
  proc = run_cli(*_search(tmp_path / "cut", *sets))
  assert proc.returncode == 0, proc.stderr
  proc = run_cli(*_search(tmp_path / "whole", *sets))
  assert proc.returncode == 0, proc.stderr
  (a, record_a), (b, record_b) = _state(tmp_path / "cut", *sets), _state(tmp_path / "whole",
                                                                         *sets)
  assert record_a == record_b and int(a.step) == 20
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):  # weights, statistics, streams
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  arch_a, arch_b = (json.loads((d / "architecture.json").read_text())
                    for d in (tmp_path / "cut", tmp_path / "whole"))
  assert arch_a["layers"] == arch_b["layers"] and arch_a["metrics"] == arch_b["metrics"]
