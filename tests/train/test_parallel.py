"""Data-parallel search over host CPU devices, and multi-host search over jax.distributed.

Each run is a real ``actsearch search`` in its own process (the device count is fixed when
JAX starts). The global batch is the same for every device count, so the runs must agree.
"""

import os
import socket

import chex
import jax
import numpy as np
import pytest

from conftest import ROOT, arch_weights, checkpoint_state, run_cli

# 480 training examples -> 240 train / 240 val; batch 24 -> 10 steps an epoch, 2 epochs.
SETS = ["search.strategy=darts", "data.num_samples=600",
        "data.num_test=0", "search.discretize=argmax",
        'search.candidates=["default"]',
        "model.widths=[16,12]",
        "search.batch_size=24", "search.epochs=2", "search.eval_batch_size=100"]


def _search(workdir, devices, *extra, sets=SETS):
  args = ["search", "--config", "experiments/mnist1d_mlp.py", "--workdir", str(workdir),
          "--no-progress", *[a for s in sets for a in ("--set", s)], *extra]
  env = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  return args, env


def _state(workdir, sets):
  return checkpoint_state(workdir, sets)[0]


# Runs ``actsearch ARGS`` and prints how many XLA compilations had happened when each
# stretch's device work (steps, checks, evaluation) was done, before the next is dispatched
# (the loop then hands the stretch over to be written: ``loop._Finished``).
COUNTING = """
import json, sys, jax
from actsearch import cli
from actsearch.strategies import bilevel
from actsearch.train import loop
compiles, at_end, traces = [0], [], [0]
def listener(event, duration, **kwargs):
  compiles[0] += event == "/jax/core/compile/backend_compile_duration"
def loaded(event, **kwargs):  # a program the suite's compilation cache held counts as one
  compiles[0] += event == "/jax/compilation_cache/cache_hits"
jax.monitoring.register_event_duration_secs_listener(listener)
jax.monitoring.register_event_listener(loaded)
finished = loop._Finished
def counted(*args, **kwargs):
  at_end.append(compiles[0])
  return finished(*args, **kwargs)
loop._Finished = counted
step_call = bilevel.StepFn.__call__
def traced(self, *args):
  traces[0] += 1
  return step_call(self, *args)
bilevel.StepFn.__call__ = traced
rc = cli.main(sys.argv[1:])
print("COMPILES " + json.dumps(at_end))
print("STEP_TRACES " + str(traces[0]))
sys.exit(rc)
"""


@pytest.mark.slow  # one process per device count
def test_twenty_steps_agree_and_compile_once_on_one_two_and_four_devices(tmp_path):
  import subprocess
  import sys
  sets = [*SETS, "search.order=second", "search.eval_every=1"]  # evaluated in epoch 1 too
  states = {}
  for n in (1, 2, 4):
    args, env = _search(tmp_path / f"d{n}", n, sets=sets)
    proc = subprocess.run([sys.executable, "-c", COUNTING, *args], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    states[n] = _state(tmp_path / f"d{n}", sets)
    assert int(states[n].step) == 20
    # Everything (step, evaluation, logging ops) compiles in epoch 1; epoch 2 compiles nothing.
    line = next(x for x in proc.stdout.splitlines() if x.startswith("COMPILES "))
    first, second = __import__("json").loads(line.split(" ", 1)[1])
    assert first > 0 and second == first, (n, first, second)
    traces = next(x for x in proc.stdout.splitlines() if x.startswith("STEP_TRACES "))
    assert traces == "STEP_TRACES 1", (n, traces)  # the step traced (and compiled) once
  for n in (2, 4):
    chex.assert_trees_all_close(states[n].arch, states[1].arch, atol=1e-5, rtol=0)
    chex.assert_trees_all_close(states[n].params, states[1].params, atol=1e-5, rtol=0)
  moved = jax.tree.map(lambda a: float(np.abs(np.asarray(a)).max()), states[1].arch)
  assert max(jax.tree.leaves(moved)) > 1e-3  # alpha did move, so agreement means something


@pytest.mark.slow  # two processes
def test_random_activation_ends_equal_on_one_and_two_devices(tmp_path):
  import json
  sets = [*SETS, "search.strategy=random_activation", "search.learning_curve=false",
          'search.candidates=["relu","tanh","sin"]',
          "search.shortlist_k=1", "search.shortlist_epochs=1", "search.shortlist_seeds=1",
          "retrain.batch_size=24"]
  states, records = {}, {}
  for n in (1, 2):
    args, env = _search(tmp_path / f"d{n}", n, sets=sets)
    proc = run_cli(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    states[n] = _state(tmp_path / f"d{n}", sets)
    records[n] = json.loads((tmp_path / f"d{n}" / "architecture.json").read_text())
  assert int(states[1].step) == 20
  chex.assert_trees_all_close(states[2].params, states[1].params, atol=1e-5, rtol=0)
  a, b = records[1]["layers"], records[2]["layers"]
  assert [x["choice"] for x in a] == [x["choice"] for x in b]
  for x, y in zip(a, b):
    assert x["scores"].keys() == y["scores"].keys()
    np.testing.assert_allclose(list(x["scores"].values()), list(y["scores"].values()),
                               atol=1e-5)
  assert records[1]["selection"]["pinned"] == "every combination"  # 3^2 networks <= 16


def test_replica_check_catches_diverged_devices(tmp_path):
  code = ("import numpy as np, jax, pytest\n"
          "from actsearch.train.parallel import assert_replicated, replicate\n"
          "same = replicate({'a': np.ones(3)})\n"
          "assert_replicated(same, 'alpha')\n"
          "diverged = jax.pmap(lambda x: x)(np.array([[1.0], [2.0]]))\n"
          "with pytest.raises(RuntimeError, match=\"alpha.* differs between device 0\"):\n"
          "  assert_replicated({'a': diverged}, 'alpha')\n"
          "print('ok')\n")
  import subprocess
  import sys
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                        env={**os.environ,
                             "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow  # three processes: two over jax.distributed and the reference
@pytest.mark.parametrize("order", ["first", "second"])
def test_two_processes_match_one_process_with_two_devices(tmp_path, order):
  import subprocess
  import sys
  sets = [*SETS, f"search.order={order}"]
  args, env = _search(tmp_path / "single", 2, sets=sets)
  proc = run_cli(*args, env=env)
  assert proc.returncode == 0, proc.stderr

  port = _free_port()
  multi = tmp_path / "multi"
  procs = []
  for pid in range(2):
    args, env = _search(multi, 1, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                        "--process-id", str(pid), sets=sets)
    procs.append(subprocess.Popen([sys.executable, "-m", "actsearch", *args], cwd=ROOT,
                                  env={**os.environ, **env}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True))
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err
  assert "wrote" in outs[0][0] and "wrote" not in outs[1][0]  # only process 0 writes
  np.testing.assert_allclose(arch_weights(multi), arch_weights(tmp_path / "single"),
                             atol=1e-5, rtol=0)
  a, b = _state(multi, sets), _state(tmp_path / "single", sets)
  chex.assert_trees_all_close(a.params, b.params, atol=1e-5, rtol=0)
  assert len([n for n in os.listdir(multi) if n.startswith("events.out")]) == 1


@pytest.mark.parametrize("flags, message", [
    (["--coordinator", "127.0.0.1:1234"], "go together"),
    (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
     "--process-id must lie in [0, 2)"),
])
def test_bad_multi_host_flags_are_user_errors(tmp_path, flags, message):
  args, _ = _search(tmp_path / "x", 1, *flags)
  proc = run_cli(*args)
  assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
