"""``actsearch bench``: what the mixed activation and the bilevel step cost, on this machine.

Cases:

* ``mlp``: input 784, hidden widths [1024, 1024, 1024], 10 classes, float32, batch 256 for
  the train and the val batch, random normal inputs and random labels, softmax relaxation per
  layer over [relu, tanh, sigmoid, sin, gelu, silu, elu, softplus].
* ``mnist1d_cnn``: the default experiment's network, candidates and batch size.

Each time is the median over ``repeats`` calls after warm-up; memory is XLA's
``memory_analysis()`` of the compiled step (temporary buffers, not arguments or outputs).
"""

from __future__ import annotations

import os
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from actsearch import bilevel, configs, kernels, models, optim, train_step
from actsearch.objective import Objective, split_model

BENCH_CANDIDATES = ["relu", "tanh", "sigmoid", "sin", "gelu", "silu", "elu", "softplus"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def _case(name: str):
  if name == "mlp":
    model_cfg = ml_collections.ConfigDict({"name": "mlp", "widths": [1024, 1024, 1024]})
    return model_cfg, (784,), 10, 256, BENCH_CANDIDATES, configs.base_config()
  if name == "mnist1d_cnn":
    cfg = configs.load_config(os.path.join(ROOT, "experiments", "mnist1d_cnn.py"))
    return cfg.model, (40,), 10, cfg.search.batch_size, list(cfg.search.candidates), cfg
  raise ValueError(name)


def run_case(name: str, repeats: int = 30, fused: bool = True) -> dict[str, float]:
  model_cfg, in_shape, n_out, batch, cands, cfg = _case(name)

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
  fixed = models.build(model_cfg, in_shape, n_out, models.uniform_slots("relu"), nnx.Rngs(0))
  f_graph, f_state = train_step.init_state(fixed, tx_w)
  f_obj = Objective(f_graph, "classification")
  fixed_grad = jax.jit(jax.grad(lambda p: f_obj(p, f_state.arch, f_state.rest, train)[0]))
  fixed_step = jax.jit(train_step.TrainStep(f_obj, tx_w, schedule), donate_argnums=(0,))

  # Mixed network: the supernet.
  rngs = nnx.Rngs(0)
  slot = models.search_slots(cands, "softmax", "layer", rngs, use_fused=fused)
  mixed = models.build(model_cfg, in_shape, n_out, slot, rngs)
  m_graph, m_params, m_arch, m_rest = split_model(mixed)
  m_obj = Objective(m_graph, "classification")
  mixed_grad = jax.jit(jax.grad(lambda p, a: m_obj(p, a, m_rest, train, None)[0],
                                argnums=(0, 1)))

  out: dict[str, float] = {}
  calls = {"fixed_fwd_bwd_ms": lambda: fixed_grad(f_state.params),
           "mixed_fwd_bwd_ms": lambda: mixed_grad(m_params, m_arch)}

  fresh = lambda tree: jax.tree.map(lambda a: jnp.asarray(np.array(a)), tree)  # donatable
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
  out.update(_median_ms(calls, repeats))
  out["search_step_temp_mb"] = out["search_step_first_temp_mb"]
  out["mixed_over_fixed_fwd_bwd"] = out["mixed_fwd_bwd_ms"] / out["fixed_fwd_bwd_ms"]
  out["second_over_first_step"] = out["search_step_second_ms"] / out["search_step_first_ms"]
  out["search_over_fixed_temp_mb"] = out["search_step_temp_mb"] / out["fixed_step_temp_mb"]
  out["search_first_over_fixed_step"] = out["search_step_first_ms"] / out["fixed_train_step_ms"]
  return out


TARGETS = {"mixed_over_fixed_fwd_bwd": 1.25, "second_over_first_step": 2.0,
           "search_over_fixed_temp_mb": 1.3}


def table(results: dict[str, dict[str, float]]) -> str:
  keys = list(next(iter(results.values())))
  names = list(results)
  rows = [("metric", *names, "target (mlp)")]
  for k in keys:
    rows.append((k, *(f"{results[n][k]:.3f}" for n in names),
                 f"<= {TARGETS[k]}" if k in TARGETS else ""))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
  lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
  return "\n".join(lines)


def run(cases=("mlp", "mnist1d_cnn"), repeats: int = 30, fused: bool = True) -> dict:
  kernel = fused and kernels.available()  # built before anything is timed (compile_s)
  results = {name: run_case(name, repeats, fused) for name in cases}
  return {"results": results, "devices": [str(d) for d in jax.devices()],
          "jax": jax.__version__, "repeats": repeats, "fused": fused, "kernel": kernel}
