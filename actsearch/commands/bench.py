"""``actsearch bench``: what the mixed activation and the bilevel step cost, on this machine.

Cases:

* ``mlp``: input 784, hidden widths [1024, 1024, 1024], 10 classes, float32, batch 256 for
  the train and the val batch, random normal inputs and random labels, softmax relaxation per
  layer over [relu, tanh, sigmoid, sin, gelu, silu, elu, softplus].
* ``mnist1d_cnn``: the default experiment's network and batch size, with the eight default
  candidates (``_default_cnn``).

Each time is the median over ``repeats`` calls after warm-up; memory is XLA's
``memory_analysis()`` of the compiled step (temporary buffers, not arguments or outputs).

The step cases run with the implementation a search on this machine takes (``search.
implementation=auto``: the measured plan of ``space/implementation.py``), then again with the
other one (XLA code where the default takes the kernel anywhere, else the kernel), each with
its own fixed step, so both ratios stand in one report beside the CPU's model and instruction
sets.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from actsearch import configs, models, usercode
from actsearch.models import network
from actsearch.space import activations, implementation, kernels
from actsearch.strategies import bilevel
from actsearch.train import optim, trainer
from actsearch.train import step as train_step
from actsearch.train.objective import Objective

BENCH_CANDIDATES = list(implementation.MEASURED_CANDIDATES)


def _median_ms(fns: dict, repeats: int, warmup: int = 3) -> dict[str, float]:
  """Median wall time of each callable; calls go round-robin so that the machine's drift
  (a shared 2-core VM varies by tens of percent) touches every measurement alike."""
  for fn in fns.values():
    for _ in range(warmup):
      jax.block_until_ready(fn())
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append((time.perf_counter() - t0) * 1e3)
  return {name: statistics.median(ts) for name, ts in times.items()}


def _temp_mb(compiled) -> float:
  return compiled.memory_analysis().temp_size_in_bytes / 2 ** 20


def _spec(name: str):
  if name == "mlp":
    model_cfg = ml_collections.ConfigDict({"name": "mlp", "widths": [1024, 1024, 1024]})
    return model_cfg, (784,), 10, 256, BENCH_CANDIDATES, configs.base_config()
  if name == "mnist1d_cnn":
    cfg = _default_cnn(None)
    return cfg.model, (40,), 10, cfg.search.batch_size, list(cfg.search.candidates), cfg
  raise ValueError(name)


def _timed_case(name: str, fused: bool, plan: str,
                with_fixed: bool = True) -> tuple[dict, dict]:
  """A step case's sizes (``out``) and its timed callables (``calls``), not yet timed; with
  ``with_fixed`` False, those of the mixed network only."""
  model_cfg, in_shape, n_out, batch, cands, cfg = _spec(name)

  def batch_of(seed):
    r = np.random.default_rng(seed)
    return {"x": jnp.asarray(r.normal(size=(batch, *in_shape)), jnp.float32),
            "y": jnp.asarray(r.integers(0, n_out, batch), jnp.int32)}
  train, val = batch_of(1), batch_of(2)
  # The search's own optimizers; the fixed step uses the same weight optimizer (SGD,
  # momentum, decay, clipping), so the two steps differ only in what the search adds.
  schedule = optim.weight_schedule(cfg.optim.weights, 1000)
  tx_w = optim.weight_optimizer(cfg.optim.weights, schedule)
  tx_a = optim.arch_optimizer(cfg.optim.arch)

  # Fixed network: ReLU in every slot, trained by retrain's own step.
  fixed = models.build(model_cfg, in_shape, n_out, models.uniform_slots("relu"), network.rngs(0))
  f_graph, f_state = train_step.init_state(fixed, tx_w)
  f_obj = Objective(f_graph, "classification")
  fixed_grad = jax.jit(jax.grad(lambda p: f_obj(p, f_state.arch, f_state.rest, train)[0]))
  fixed_step = jax.jit(train_step.TrainStep(f_obj, tx_w, schedule), donate_argnums=(0,))

  # Mixed network: the supernet.
  rngs = network.rngs(0)
  slot = models.search_slots(cands, "softmax", "layer", rngs, use_fused=fused,
                             implementation=plan)
  mixed = models.build(model_cfg, in_shape, n_out, slot, rngs)
  m_graph, m_params, m_arch, m_rest = network.split_model(mixed)
  m_obj = Objective(m_graph, "classification")
  mixed_grad = jax.jit(jax.grad(lambda p, a: m_obj(p, a, m_rest, train, None)[0],
                                argnums=(0, 1)))

  out: dict[str, float] = {}
  calls = {"mixed_fwd_bwd_ms": lambda: mixed_grad(m_params, m_arch)}
  fresh = lambda tree: jax.tree.map(lambda a: jnp.asarray(np.array(a)), tree)  # donatable
  if with_fixed:
    calls["fixed_fwd_bwd_ms"] = lambda: fixed_grad(f_state.params)
    fixed_compiled = fixed_step.lower(f_state, train).compile()
    out["fixed_step_temp_mb"] = _temp_mb(fixed_compiled)
    fixed_holder = {"s": fresh(f_state)}

    def call_fixed():
      fixed_holder["s"], metrics = fixed_compiled(fixed_holder["s"], train)
      return metrics
    calls["fixed_train_step_ms"] = call_fixed

  for order in ("first", "second"):
    step = jax.jit(bilevel.StepFn(m_obj, tx_w, tx_a, schedule, order=order),
                   donate_argnums=(0,))
    _, state = bilevel.init_state(mixed, tx_w, tx_a, 0)
    t0 = time.perf_counter()
    compiled = step.lower(state, train, val).compile()
    if order == "first":
      out["compile_s"] = time.perf_counter() - t0
    out[f"search_step_{order}_temp_mb"] = _temp_mb(compiled)
    holder = {"s": fresh(state)}

    def call_step(compiled=compiled, holder=holder):
      holder["s"], metrics = compiled(holder["s"], train, val)
      return metrics
    calls[f"search_step_{order}_ms"] = call_step
  return out, calls


def _ratios(out: dict) -> dict:
  out["search_step_temp_mb"] = out["search_step_first_temp_mb"]
  out["mixed_over_fixed_fwd_bwd"] = out["mixed_fwd_bwd_ms"] / out["fixed_fwd_bwd_ms"]
  out["second_over_first_step"] = out["search_step_second_ms"] / out["search_step_first_ms"]
  out["search_over_fixed_temp_mb"] = out["search_step_temp_mb"] / out["fixed_step_temp_mb"]
  out["search_first_over_fixed_step"] = out["search_step_first_ms"] / out["fixed_train_step_ms"]
  return out


def run_case(name: str, repeats: int = 30, fused: bool = True,
             plans: tuple[str, ...] = ("auto",), beside: dict | None = None
             ) -> list[dict[str, float]]:
  """The figures of a step case once per implementation plan. The plans' calls are timed in
  one round-robin, so that the machine's drift touches every plan alike, and every plan is
  set against the same fixed network's timings: their ratios compare. ``beside``: more
  callables timed in the same round-robin (the PyTorch peer), their times in the first
  plan's figures."""
  cases = [_timed_case(name, fused, plan, with_fixed=i == 0) for i, plan in enumerate(plans)]
  calls = {(i, key): fn for i, (_, fns) in enumerate(cases) for key, fn in fns.items()}
  calls.update({(0, key): fn for key, fn in (beside or {}).items()})
  times = _median_ms(calls, repeats)
  cases[0][1].update(beside or {})
  fixed_keys = ("fixed_fwd_bwd_ms", "fixed_train_step_ms")
  shared = {"fixed_step_temp_mb": cases[0][0]["fixed_step_temp_mb"],
            **{key: times[(0, key)] for key in fixed_keys}}
  return [_ratios({**out, **shared, **{key: times[(i, key)] for key in fns}})
          for i, (out, fns) in enumerate(cases)]


TARGETS = {"mixed_over_fixed_fwd_bwd": 1.25, "second_over_first_step": 2.0,
           "search_over_fixed_temp_mb": 1.3}
# The loop cases: whole-run step rate against the step alone (higher is better), per-seed
# time of seeds trained together against one seed alone (lower is better).
LOOP_TARGETS = {"search_loop_over_alone_rate": ">= 0.9", "retrain_loop_over_alone_rate": ">= 0.9",
                "retrain_per_seed_over_one": "<= 1.0", "speedup_over_torch_eager": ">= 1.6",
                "speedup_over_torch_compile": ">= 1.3"}


def _markdown(rows) -> str:
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
  lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
  return "\n".join(lines)


def header(report: dict) -> str:
  """One line: the CPU, and which implementation of the mixture the figures are of."""
  cpu = report["cpu"]
  other = report.get("other_implementation")
  beside = f"; beside it, columns '(… ({other})': {other}" if other else ""
  return (f"CPU: {cpu['model']} ({', '.join(cpu['isa']) or 'no listed instruction sets'}; "
          f"{cpu['cores']} cores); fused mixture: {report['implementation']}{beside}")


def table(results: dict[str, dict[str, float]]) -> str:
  """One table of the step cases side by side, then one per loop case."""
  out = []
  steps = [n for n in results if n not in ("loop", "retrain", "peer")]
  if steps:
    rows = [("metric", *steps, "target (mlp)")]
    for k in results[steps[0]]:
      rows.append((k, *(f"{results[n][k]:.3f}" for n in steps),
                   f"<= {TARGETS[k]}" if k in TARGETS else ""))
    out.append(_markdown(rows))
  for name in ("loop", "retrain", "peer"):
    if name in results:
      rows = [(f"{name}: metric", "value", "target")]
      rows += [(k, f"{v:.4g}" if isinstance(v, float) else str(v), LOOP_TARGETS.get(k, ""))
               for k, v in results[name].items()]
      out.append(_markdown(rows))
  return "\n\n".join(out)


CASES = ("mlp", "mnist1d_cnn", "loop", "retrain", "peer")


def other_plan(default: str) -> str | None:
  """The implementation set beside the default in the step cases: the XLA code where the
  default takes the kernel for any pass, else the kernel (None where it cannot be built)."""
  if default != "xla":
    return "xla"
  return "kernel" if kernels.available() else None


def run(cases=CASES, repeats: int = 30, fused: bool = True, epochs: int | None = None,
        rounds: int = 5) -> dict:
  kernel = fused and kernels.available()  # built before anything is timed (compile_s)
  default = implementation.machine_plan().spec()  # measured once per machine, if not yet
  other = other_plan(default) if fused else None
  results = {}
  peer_info, peer_calls = {}, {}
  if "peer" in cases:
    from actsearch.commands import peer

    peer_info, peer_calls = peer.steps()
  for name in sorted(cases, key=lambda n: n == "peer"):  # the peer after the mlp it ran beside
    if name == "loop":
      results[name] = run_loop(repeats, epochs, rounds)
    elif name == "retrain":
      results[name] = run_retrain(repeats, epochs, rounds)
    elif name == "peer":
      results[name] = dict(peer_info)
      if "mlp" in cases:  # the same step, timed beside actsearch's mlp steps
        ours = results["mlp"]["search_step_first_ms"]
        for key, mode in (("torch_eager_step_ms", "eager"), ("torch_compile_step_ms", "compile")):
          if key in results["mlp"]:
            results[name][key] = results["mlp"].pop(key)
            results[name][f"speedup_over_torch_{mode}"] = results[name][key] / ours
      else:
        results[name].update(_median_ms(peer_calls, repeats))
    else:
      figures = run_case(name, repeats, fused, (default,) if other is None else (default, other),
                         beside=peer_calls if name == "mlp" else None)
      results[name] = figures[0]
      if other is not None:
        results[f"{name} ({other})"] = figures[1]
  return {"results": results, "devices": [str(d) for d in jax.devices()],
          "jax": jax.__version__, "repeats": repeats, "rounds": rounds, "fused": fused,
          "kernel": kernel, "implementation": default if fused else "plain sum",
          "other_implementation": other, "cpu": kernels.cpu()}


def _rate_after(timeline: list, start_step: int) -> float:
  """Milliseconds per step of a run from the end of ``start_step`` to its last checkpoint,
  evaluations and checkpoints included. From the end of the first epoch every compilation is
  behind a run: the step's, the epoch's scalars', the evaluation's (compiled before the first
  step; when it compiled at the first evaluation, epoch 5 of the default search, its 0.35 s
  fell inside this window)."""
  start = next(t for step, t in timeline if step == start_step)
  end_step, end = timeline[-1]
  return (end - start) * 1e3 / (end_step - start_step)


def _rates(standalone: list[float], whole: list[float]) -> list[float]:
  """Per round: the whole run's step rate over the step-alone rate, the step alone taken as
  the mean of its measurements just before and just after that run."""
  return [(a + b) / 2 / w for a, b, w in zip(standalone, standalone[1:], whole)]


def _step_ms(step, state, batches, repeats: int) -> float:
  """The bench's way to time a step: jitted, state donated, the same batches every call, the
  median of ``repeats`` calls after warm-up."""
  fresh = lambda tree: jax.tree.map(lambda a: jnp.asarray(np.array(a)), tree)  # donatable
  compiled = jax.jit(step, donate_argnums=(0,)).lower(state, *batches).compile()
  holder = {"s": fresh(state)}

  def call():
    holder["s"], metrics = compiled(holder["s"], *batches)
    return metrics
  return _median_ms({"step": call}, repeats)["step"]


def _default_cnn(epochs: int | None) -> ml_collections.ConfigDict:
  """The default experiment with the eight default candidates and parameters per layer, as
  the bench's figures were first measured (the experiment's sixteen include parametric and
  learned ones the fused kernel does not cover)."""
  cfg = usercode.load_config(configs.experiment("mnist1d_cnn"))
  cfg.search.strategy = "darts"  # the supernet's loop is what the bench measures
  cfg.search.candidates = list(activations.DEFAULT)
  cfg.search.param_granularity = "layer"
  if epochs is not None:
    cfg.search.epochs = cfg.retrain.epochs = epochs
  return cfg


def run_loop(repeats: int = 30, epochs: int | None = None, rounds: int = 5) -> dict[str, float]:
  """``loop``: the real ``actsearch search`` of the default experiment (its epochs, evaluation,
  checkpoints, logs) against its own step alone. Discretization is argmax here: what follows
  the loop (the shortlist's training) is not a search step.

  The speed of this shared VM drifts by tens of percent over seconds, so the two are measured
  in turn: the step alone, a whole run, the step alone, ... (``rounds`` runs). Each run's rate
  is set against the mean of the step-alone times just before and after it, and the figure is
  the median over the rounds."""
  import tempfile

  from actsearch.commands import search
  from actsearch.strategies import supernet

  cfg = _default_cnn(epochs)
  cfg.search.discretize = "argmax"
  su = supernet.setup(cfg)
  batch = cfg.search.batch_size
  take = lambda x, y: {"x": jnp.asarray(x[:batch]), "y": jnp.asarray(y[:batch])}
  alone = dataclasses.replace(su.step_fn, axis_name=None)
  batches = (take(su.splits.x_train, su.splits.y_train), take(su.splits.x_val, su.splits.y_val))
  standalone = [_step_ms(alone, su.state, batches, repeats)]
  whole = []
  for _ in range(rounds):
    timeline: list = []
    with tempfile.TemporaryDirectory() as workdir:
      search.run(cfg, workdir, progress=False, timeline=timeline)
    whole.append(_rate_after(timeline, su.steps_per_epoch))
    standalone.append(_step_ms(alone, su.state, batches, repeats))
  ratios = _rates(standalone, whole)
  return {"search_step_alone_ms": statistics.median(standalone),
          "search_loop_ms_per_step": statistics.median(whole),
          "search_loop_over_alone_rate": statistics.median(ratios),
          "search_loop_over_alone_rate_min": min(ratios),
          "search_loop_over_alone_rate_max": max(ratios),
          "search_steps_per_epoch": float(su.steps_per_epoch),
          "search_epochs": float(cfg.search.epochs)}


def _retrain_setup(cfg, seeds):
  from actsearch import data
  from actsearch.commands import retrain

  splits = data.load(cfg.data, retrain.SPLIT_SEED)
  x = np.concatenate([splits.x_train, splits.x_val])
  y = np.concatenate([splits.y_train, splits.y_val])
  graphdef, state = trainer.stack_models([
      models.build(cfg.model, splits.input_shape, splits.num_outputs,
                   models.uniform_slots("relu"), network.rngs(s)) for s in seeds])
  return Objective.of(graphdef, splits), state, x, y, splits


def _retrain_loop(cfg, seeds, workdir: str):
  """The retrain loop of a ReLU CNN over ``seeds``: (final state, timeline, seconds)."""
  objective, state, x, y, splits = _retrain_setup(cfg, seeds)
  timeline: list = []
  state, seconds = trainer.fit(cfg.retrain, objective, state, x, y, workdir, seeds,
                               [f"seed{s}" for s in seeds], progress=False, timeline=timeline)
  test = trainer.score(objective, state, splits.x_test, splits.y_test,
                       cfg.retrain.eval_batch_size, "test")
  return state, timeline, seconds, len(x) // cfg.retrain.batch_size, test


def run_retrain(repeats: int = 30, epochs: int | None = None,
                rounds: int = 5) -> dict[str, float]:
  """``retrain``: the retrain loop (5 seeds vmapped, the default recipe, ReLU CNN) against its
  own step alone, and one seed alone against five together: per-seed wall time, and seed 0
  trained alone against within the five (its test accuracy, and the largest difference of
  its weights: float summation order differs between the two programs, about 1e-7 after a
  step, and training amplifies it over thousands of steps). As in ``run_loop``, the step
  alone, five seeds and one seed are measured in turn over ``rounds``, each ratio within its
  round, and the figures are medians over the rounds."""
  import tempfile

  cfg = _default_cnn(epochs)
  r = cfg.retrain
  five = list(range(5))
  objective, state, x, y, _ = _retrain_setup(cfg, five)
  steps = len(x) // r.batch_size
  schedule = optim.weight_schedule(r, r.epochs * steps)
  tx = optim.weight_optimizer(r, schedule)
  state = jax.vmap(lambda st: st.replace(opt=tx.init(st.params)))(state)
  rng = np.random.default_rng(0)
  idx = rng.integers(0, len(x), (5, r.batch_size))
  batch = {"x": jnp.asarray(x[idx]), "y": jnp.asarray(y[idx])}
  alone = jax.vmap(train_step.TrainStep(objective, tx, schedule))
  standalone = [_step_ms(alone, state, (batch,), repeats)]
  whole, seconds5, seconds1 = [], [], []
  with tempfile.TemporaryDirectory() as d:
    for i in range(rounds):
      together, timeline, secs, spe, test5 = _retrain_loop(cfg, five, os.path.join(d, f"5_{i}"))
      whole.append(_rate_after(timeline, spe))
      standalone.append(_step_ms(alone, state, (batch,), repeats))
      single, _, secs1, _, test1 = _retrain_loop(cfg, [0], os.path.join(d, f"1_{i}"))
      seconds5.append(secs)
      seconds1.append(secs1)
  rates = _rates(standalone, whole)
  diff = max(float(np.max(np.abs(np.asarray(a)[0] - np.asarray(b)[0])))
             for a, b in zip(jax.tree.leaves(together.params), jax.tree.leaves(single.params)))
  metric = "test/accuracy" if "test/accuracy" in test1 else "test/loss"
  med = statistics.median
  return {"retrain_step_alone_ms": med(standalone), "retrain_loop_ms_per_step": med(whole),
          "retrain_loop_over_alone_rate": med(rates),
          "retrain_loop_over_alone_rate_min": min(rates),
          "retrain_loop_over_alone_rate_max": max(rates),
          "retrain_one_seed_s": med(seconds1), "retrain_five_seeds_s": med(seconds5),
          "retrain_per_seed_over_one": med([f / 5 / o for f, o in zip(seconds5, seconds1)]),
          "retrain_seed0_max_abs_diff": diff,
          "retrain_seed0_alone": float(np.asarray(test1[metric])[0]),
          "retrain_seed0_within_five": float(np.asarray(test5[metric])[0])}
