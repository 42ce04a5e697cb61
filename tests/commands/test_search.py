"""The search end to end, in a temporary workdir: files, TensorBoard events, resume, export."""

import json
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from actsearch import architecture, cli
from actsearch.space import activations, implementation, kernels
from actsearch.train.checkpoint import Checkpointer

from conftest import ROOT, arch_weights, checkpoint_state

TINY = ["--set", "search.strategy=darts",
        "--set", "data.num_samples=600", "--set", "data.num_test=0",
        "--set", "search.discretize=argmax",
        "--set", "model.widths=[16,12]", "--set", "search.batch_size=32",
        "--set", "search.epochs=3", "--set", "search.eval_every=1",
        "--set", 'search.candidates=["default"]', "--no-progress"]


def search(workdir, *extra):
  return cli.main(["search", "--config", os.path.join(ROOT, "experiments/mnist1d_mlp.py"),
                   "--workdir", str(workdir), *TINY, *extra])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  assert search(workdir, "--epochs", "2") == 0
  return workdir


def test_run_directory_holds_config_checkpoint_events_and_architecture(run_dir):
  names = set(os.listdir(run_dir))
  assert {"config.json", "architecture.json", "checkpoints", "metrics.jsonl"} <= names
  assert any(n.startswith("events.out.tfevents") for n in names)
  assert Checkpointer(str(run_dir / "checkpoints"), read_only=True).latest() == 14
  cfg = json.loads((run_dir / "config.json").read_text())
  assert cfg["model"]["widths"] == [16, 12] and cfg["search"]["epochs"] == 3
  arch = architecture.load(str(run_dir / "architecture.json"))
  assert arch["schema"] == "actsearch.architecture/v2"
  assert arch["strategy"]["name"] == "darts" and arch["strategy"]["cost"]["seconds"] > 0
  assert arch["code"] == [] and arch["param_granularity"] == "layer"
  assert [layer["name"] for layer in arch["layers"]] == ["block0/act", "block1/act"]
  assert arch["candidates"] == list(activations.DEFAULT)
  for layer in arch["layers"]:
    assert layer["choice"] == max(layer["weights"], key=layer["weights"].get)
    assert sum(layer["weights"].values()) == pytest.approx(1.0, abs=1e-5)
  assert 0.0 < arch["metrics"]["val_accuracy"] <= 1.0 and arch["seed"] == 0
  assert arch["data"]["task"] == "classification" and arch["data"]["train"] == 240


def test_tensorboard_reads_the_events_with_the_contract_tags(run_dir):
  acc = event_accumulator.EventAccumulator(str(run_dir))
  acc.Reload()
  tags = set(acc.Tags()["scalars"])
  assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy"} <= tags
  for slot in ("block0/act", "block1/act"):
    for cand in activations.DEFAULT:
      assert f"arch/{slot}/{cand}" in tags
    assert f"arch/{slot}/entropy" in tags
  steps = [e.step for e in acc.Scalars("train/loss")]
  assert steps == list(range(1, 15))  # 7 steps per epoch, 2 epochs
  assert len(acc.Scalars("val/accuracy")) == 2
  final = {k: acc.Scalars(f"arch/block0/act/{k}")[-1].value for k in activations.DEFAULT}
  arch = json.loads((run_dir / "architecture.json").read_text())
  for k, v in final.items():
    assert v == pytest.approx(arch["layers"][0]["weights"][k], abs=1e-6)


@pytest.mark.slow  # a search of its own
def test_learned_parameters_reach_tensorboard_the_record_and_show(tmp_path, capsys):
  """A search over parametric and learned candidates, per-channel parameters: TensorBoard logs
  each learned parameter per epoch, the record holds the chosen one's arrays, show prints
  them."""
  workdir = tmp_path / "run"
  assert search(workdir, "--epochs", "1", "--set", 'search.candidates=["prelu","pau","relu"]',
                "--set", "search.param_granularity=channel",
                "--set", "search.granularity=layer") == 0
  acc = event_accumulator.EventAccumulator(str(workdir))
  acc.Reload()
  tags = set(acc.Tags()["scalars"])
  for slot in ("block0/act", "block1/act"):
    assert {f"params/{slot}/prelu/slope", f"params/{slot}/pau/num",
            f"params/{slot}/pau/den"} <= tags
  arch = architecture.load(str(workdir / "architecture.json"))
  assert arch["param_granularity"] == "channel"
  for layer, width in zip(arch["layers"], (16, 12)):
    if layer["choice"] == "pau":
      assert layer["params"]["pau"]["num"]["shape"] == [width, 6]
    elif layer["choice"] == "prelu":
      assert layer["params"]["prelu"]["slope"]["shape"] == [width]
    else:
      assert layer["params"] == {}
  capsys.readouterr()
  assert cli.main(["show", str(workdir / "architecture.json")]) == 0
  out = capsys.readouterr().out
  if any(layer["params"] for layer in arch["layers"]):
    assert "learned parameters (per channel)" in out


def test_metrics_jsonl_has_one_line_per_step_and_epoch(run_dir):
  lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in lines if "train/loss" in r] == list(range(1, 15))
  assert [r["step"] for r in lines if "val/accuracy" in r] == [7, 14]


def _state(workdir):
  return checkpoint_state(workdir, [TINY[i + 1] for i in range(0, len(TINY) - 1, 2)])


def test_resume_continues_exactly(run_dir, tmp_path):
  resumed = tmp_path / "resumed"
  assert search(resumed, "--epochs", "1") == 0
  assert Checkpointer(str(resumed / "checkpoints"), read_only=True).latest() == 7
  assert search(resumed, "--epochs", "2") == 0
  np.testing.assert_allclose(arch_weights(resumed), arch_weights(run_dir), atol=1e-6, rtol=0)
  a, rec_a = _state(resumed)
  b, rec_b = _state(run_dir)
  assert rec_a["epoch"] == rec_b["epoch"] == 2 and int(a.step) == int(b.step) == 14
  import jax
  for x, y in zip(jax.tree.leaves((a.params, a.arch, a.opt_w, a.opt_a)),
                  jax.tree.leaves((b.params, b.arch, b.opt_w, b.opt_a))):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6, rtol=0)
  events = [n for n in os.listdir(resumed) if n.startswith("events.out")]
  assert len(events) == 2  # one events file per invocation, TensorBoard merges them


def test_resume_with_a_different_config_is_refused_and_changes_nothing(run_dir, capsys):
  before = {n: (run_dir / n).read_bytes() for n in ("config.json", "architecture.json")}
  assert search(run_dir, "--set", "search.order=second") == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "different config (search.order)" in err[0]
  assert {n: (run_dir / n).read_bytes() for n in before} == before


def test_export_rebuilds_the_architecture_from_the_checkpoint(run_dir, tmp_path, capsys):
  out = tmp_path / "exported.json"
  assert cli.main(["export", str(run_dir), "--out", str(out)]) == 0
  exported = json.loads(out.read_text())
  original = json.loads((run_dir / "architecture.json").read_text())
  assert exported["layers"] == original["layers"]
  assert exported["metrics"] == pytest.approx(original["metrics"])
  assert "block0/act" in capsys.readouterr().out


def test_show_prints_choice_runner_up_and_margin(run_dir, capsys):
  assert cli.main(["show", str(run_dir / "architecture.json")]) == 0
  out = capsys.readouterr().out
  arch = json.loads((run_dir / "architecture.json").read_text())
  layer = arch["layers"][1]
  ranked = sorted(layer["weights"].items(), key=lambda kv: -kv[1])
  row = next(line for line in out.splitlines() if line.startswith("block1/act"))
  assert row.split() == ["block1/act", ranked[0][0], f"{ranked[0][1]:.3f}", ranked[1][0],
                         f"{ranked[1][1]:.3f}", f"{ranked[0][1] - ranked[1][1]:.3f}"]
  assert "runner-up" in out and "margin" in out


def test_user_npz_classification_search(classification_npz, tmp_path):
  workdir = tmp_path / "npz"
  rc = cli.main(["search", "--config", os.path.join(ROOT, "experiments/mlp.py"),
                 "--data", classification_npz, "--workdir", str(workdir), "--no-progress",
                 "--set", "search.epochs=2", "--set", "model.widths=[8]",
                 "--set", 'search.candidates=["relu","gelu"]',  # the data's path, not the
                 "--set", "search.discretize=argmax"])  # candidates' or the screen's
  assert rc == 0
  arch = json.loads((workdir / "architecture.json").read_text())
  assert arch["data"]["task"] == "classification" and arch["data"]["num_outputs"] == 3
  assert arch["data"]["path"] == os.path.abspath(classification_npz)


@pytest.mark.parametrize("order", ["first", "second"])
def test_the_step_compiles_once_and_nothing_recompiles_between_epochs(tmp_path, monkeypatch,
                                                                      order):
  import jax

  from actsearch.strategies import bilevel
  from actsearch.train import loop
  compiles, at_end = [0], []

  def listener(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
      compiles[0] += 1

  def loaded(event, **kwargs):  # a program the suite's compilation cache held counts as one
    if event == "/jax/compilation_cache/cache_hits":
      compiles[0] += 1
  jax.monitoring.register_event_duration_secs_listener(listener)
  jax.monitoring.register_event_listener(loaded)
  traces = {"step": 0}
  real_call = bilevel.StepFn.__call__

  def counting_call(self, *args):
    traces["step"] += 1
    return real_call(self, *args)
  monkeypatch.setattr(bilevel.StepFn, "__call__", counting_call)
  finished = loop._Finished

  def recording(*args, **kwargs):  # an epoch's device work done (steps, checks, evaluation)
    at_end.append((compiles[0], traces["step"]))
    return finished(*args, **kwargs)
  monkeypatch.setattr(loop, "_Finished", recording)
  try:
    assert search(tmp_path / "c", "--set", "search.epochs=4", "--set", "search.eval_every=2",
                  "--set", f"search.order={order}") == 0
  finally:
    jax.monitoring.clear_event_listeners()
  # Traced and compiled once, in epoch 1 (the replicated state is placed as the step's own
  # outputs are, so the second step does not compile again), never again; the compile count
  # of epoch 1 covers the step, the logging ops and the evaluation, which is compiled before
  # the first step although it first runs in epoch 2.
  assert traces["step"] == 1
  assert len(at_end) == 4 and at_end[0] == at_end[1] == at_end[2] == at_end[3], at_end
  assert at_end[0][1] == traces["step"]


def test_the_val_split_is_evaluated_every_eval_every_epochs_and_after_the_last(tmp_path):
  """Every step logs its own val batch; the whole val split at the cadence and at the end."""
  workdir = tmp_path / "cadence"
  assert search(workdir, "--set", "search.eval_every=2") == 0  # 3 epochs of 7 steps
  lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [x["step"] for x in lines if "val/loss" in x] == [14, 21]
  assert len([x for x in lines if "val_batch/loss" in x]) == 21


def _leaves(workdir):
  import jax
  state, _ = _state(workdir)
  return [np.asarray(a) for a in jax.tree.leaves((state.params, state.arch, state.opt_w))]


@pytest.mark.skipif(not kernels.available(), reason="the CPU kernel could not be built here")
@pytest.mark.slow  # four searches (28 s); the refusal of another explicit one stays fast
def test_a_resumed_run_keeps_the_implementation_it_recorded(tmp_path, monkeypatch, request):
  # The machine's plan is XLA code when the run begins and the kernel when it resumes (a new
  # measurement, a wiped cache): the resumed run computes on as it began, exactly.
  def machine(plan):
    monkeypatch.setenv(implementation.ENV, plan)
    implementation.machine_plan.cache_clear()
  request.addfinalizer(implementation.machine_plan.cache_clear)
  xla, kernel, resumed = tmp_path / "xla", tmp_path / "kernel", tmp_path / "resumed"
  machine("0")
  assert search(xla, "--epochs", "2") == 0
  assert search(resumed, "--epochs", "1") == 0
  assert json.loads((resumed / "config.json").read_text())["search"]["implementation"] == "xla"
  machine("1")
  assert search(kernel, "--epochs", "2") == 0
  assert search(resumed, "--epochs", "2") == 0
  assert json.loads((resumed / "config.json").read_text())["search"]["implementation"] == "xla"
  for a, b in zip(_leaves(resumed), _leaves(xla)):
    np.testing.assert_array_equal(a, b)
  # ... which matters: the kernel's run differs from the XLA code's in the last bits.
  assert any(np.any(a != b) for a, b in zip(_leaves(kernel), _leaves(xla)))


def test_resuming_with_another_explicit_implementation_is_refused(run_dir, capsys):
  recorded = json.loads((run_dir / "config.json").read_text())["search"]["implementation"]
  other = "xla" if recorded != "xla" else "kernel"
  before = (run_dir / "config.json").read_bytes()
  assert search(run_dir, "--set", f"search.implementation={other}") == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "different config (search.implementation)" in err[0]
  assert (run_dir / "config.json").read_bytes() == before
