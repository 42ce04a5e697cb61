r"""Pure step functions of the bilevel search, and their data-parallel wrapper.

The search solves (Liu et al. 2019, DARTS)

.. math::  \min_\alpha L_{val}(w^*(\alpha), \alpha) \quad
           \text{s.t.}\quad w^*(\alpha) = \arg\min_w L_{train}(w, \alpha)

by alternating one optimizer step on the weights w (train split) with one on alpha
(val split). Both gradients of a step are taken at the same point (w_t, alpha_t), so the
train gradient that moves the weights is also the one inside the unrolled objective.

Hypergradients (``search.order``):

* ``first``:  :math:`\nabla_\alpha L_{val}(w, \alpha)`.
* ``second`` (exact): with :math:`w' = w - \xi \nabla_w L_{train}(w, \alpha)`,

  .. math:: \frac{d}{d\alpha} L_{val}(w', \alpha) = \nabla_\alpha L_{val}(w', \alpha)
            - \xi \, \nabla^2_{\alpha, w} L_{train}(w, \alpha)\, \nabla_{w'} L_{val}(w', \alpha),

  the mixed second derivative applied to a vector by reverse-mode autodiff through the
  train gradient (a vector-Hessian product): no finite differences. Dense layers take a
  cheaper exact route through the factors of their gradients (``_second_order_lowrank``).
* ``second_fd``: DARTS' central difference for the same product,
  :math:`\nabla^2_{\alpha,w} L_{train}\, v \approx [\nabla_\alpha L_{train}(w^+, \alpha)
  - \nabla_\alpha L_{train}(w^-, \alpha)] / (2\epsilon)`, :math:`w^\pm = w \pm \epsilon v`,
  :math:`\epsilon = 0.01 / \lVert v \rVert`, :math:`v = \nabla_{w'} L_{val}(w', \alpha)`.

:math:`\xi` is the current weight learning rate unless ``search.xi`` is set.

Data parallel: under ``pmap`` with ``axis_name``, every gradient and metric is averaged
over the axis with ``lax.pmean`` before it is used, so each device holds the same w and
alpha and the result does not depend on how the global batch is split.

Batch statistics (batch norm), as DARTS' code does: both passes run in train mode, each
normalising with the statistics of its own batch (the global batch: synchronised across
devices); the running averages keep the train pass's update, the val pass's (and the
virtual step's) is dropped, so they follow the weights' training data alone. Dropout draws
its own masks in each pass.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from actsearch.errors import UserError
from actsearch.models import taps
from actsearch.models.network import split_model
from actsearch.train.objective import Batch, Objective, training_pass
from actsearch.train.parallel import pmean, pmean_floats

ORDERS = ("first", "second", "second_fd")


@struct.dataclass
class SearchState:
  """Everything a search needs to continue exactly."""
  step: jax.Array        # int32 scalar, steps taken
  params: Any            # weights (nnx.Param state)
  arch: Any              # alpha (ArchParam state)
  rest: Any              # other variables (constants of fixed slots, ...)
  opt_w: Any             # weight optimizer state
  opt_a: Any             # alpha optimizer state
  rng: jax.Array         # uint32 key data


def _sub(a, b, scale):
  return jax.tree.map(lambda x, y: x - scale * y, a, b)


def _grad_w(objective, params, arch, rest, batch, key, axis_name):
  """Train loss gradient w.r.t. the weights, its metrics and the model's new non-weight
  state, averaged over the device axis."""
  g, (metrics, rest) = jax.grad(objective, has_aux=True)(params, arch, rest, batch, key)
  return pmean(g, axis_name), pmean(metrics, axis_name), pmean_floats(rest, axis_name)


def hypergradient(objective: Objective, params, arch, rest, train_batch: Batch,
                  val_batch: Batch, *, order: str, xi, key_train=None, key_val=None,
                  axis_name: str | None = None, arch_active=True, lowrank: bool = True):
  """The alpha gradient of the chosen order and the train gradient it used.

  Returns ``(grad_alpha, grad_w_train, train_metrics, val_metrics, rest)``, all averaged over
  ``axis_name``; ``rest`` is the model's non-weight state after the train pass.
  ``grad_w_train`` is :math:`\\nabla_w L_{train}(w, \\alpha)`. With a false
  ``arch_active`` (warm-up), the first-order alpha gradient is zero and not computed.
  With ``lowrank`` (the default), the exact second order works with the factors of dense
  layers' gradients where the model allows it (``_second_order_lowrank``); the result is the
  same.
  """
  if order == "first":
    def val_grad(_):
      return jax.grad(objective, argnums=1, has_aux=True)(params, arch, rest, val_batch, key_val)

    def val_loss_only(_):  # during warm-up: the val metrics, without the backward pass
      return jax.tree.map(jnp.zeros_like, arch), objective(params, arch, rest, val_batch,
                                                           key_val)[1]
    # The val pass's non-weight state is dropped: batch statistics follow the train pass.
    # A conditional on a traced predicate also scopes the val pass's buffers: XLA reuses
    # them for the train pass instead of packing both into one allocation (19 -> 14 MiB
    # of temporaries for the reference MLP).
    g_a, (val_m, _) = jax.lax.cond(arch_active, val_grad, val_loss_only, None)
    g_a, val_m = pmean((g_a, val_m), axis_name)
    # The barrier orders the two passes: the val pass's activations are freed before the
    # train pass allocates its own, which keeps the step's peak memory near a plain step's.
    g_a, val_m, train_batch = jax.lax.optimization_barrier((g_a, val_m, train_batch))
    g_w, train_m, new_rest = _grad_w(objective, params, arch, rest, train_batch, key_train,
                                     axis_name)
    return g_a, g_w, train_m, val_m, new_rest

  if order == "second" and lowrank:
    layers = _dense_layers(objective, params, arch, rest, (train_batch, val_batch),
                           (key_train, key_val))
    if layers is not None:
      return _second_order_lowrank(objective, params, arch, rest, train_batch, val_batch, xi,
                                   key_train, key_val, axis_name, layers)

  def train_grad(a):
    return jax.grad(objective, has_aux=True)(params, a, rest, train_batch, key_train)

  if order == "second":
    g_local, mixed_vjp, (train_m, new_rest) = jax.vjp(train_grad, arch, has_aux=True)
  elif order == "second_fd":
    g_local, (train_m, new_rest) = train_grad(arch)
  else:
    raise UserError(f"unknown search.order {order!r}; known: {', '.join(ORDERS)}")
  g_w = pmean(g_local, axis_name)
  train_m, new_rest = pmean(train_m, axis_name), pmean_floats(new_rest, axis_name)
  w_virtual = _sub(params, g_w, xi)
  (dw, da), (val_m, _) = jax.grad(objective, argnums=(0, 1), has_aux=True)(
      w_virtual, arch, rest, val_batch, key_val)
  dw, da, val_m = pmean((dw, da, val_m), axis_name)
  if order == "second":
    # vjp is linear in the cotangent: the mean of the local products is the global one.
    (h,) = mixed_vjp(dw)
  else:
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in jax.tree.leaves(dw)))
    eps = 0.01 / jnp.maximum(norm, 1e-12)
    grad_a = jax.grad(objective, argnums=1, has_aux=True)
    g_plus, _ = grad_a(_sub(params, dw, -eps), arch, rest, train_batch, key_train)
    g_minus, _ = grad_a(_sub(params, dw, eps), arch, rest, train_batch, key_train)
    h = jax.tree.map(lambda p, m: (p - m) / (2.0 * eps), g_plus, g_minus)
  h = pmean(h, axis_name)
  return _sub(da, h, xi), g_w, train_m, val_m, new_rest


def _leaf_paths(tree) -> list[tuple]:
  """Each leaf's path as a tuple of plain keys: ``('layers', 0, 'kernel', 'value')``."""
  return [tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in kp)
          for kp, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _dense_layers(objective, params, arch, rest, batches, keys):
  """``{path: output shape}`` of the dense layers that the low-rank form applies to, from a
  trace of the model on each batch (no computation), or None if there are none or a dense
  layer runs twice in one call (then its gradient is not one product ``X^T Delta``)."""
  shapes = []
  for batch, key in zip(batches, keys):
    tape = taps.Tape()
    jax.eval_shape(lambda p, a, r, b, k, tape=tape: objective(p, a, r, b, k, tape=tape)[0],
                   params, arch, rest, batch, key)
    if tape.repeated or not tape.inputs:
      return None
    shapes.append(tape.output_shapes)
  kinds = {}  # module path -> names of its weights
  for p in _leaf_paths(params):
    kinds.setdefault(p[:-2], set()).add(p[-2])
  if any("kernel" not in kinds.get(path, ()) for path in shapes[0]):
    return None
  return shapes


def _lowrank_cotangents(x, delta, x_val, delta_val):
  r"""For one dense layer, the gradient of :math:`\langle X^\top \Delta, V \rangle` with
  respect to :math:`X` and :math:`\Delta`, where :math:`V = X'^\top \Delta'`:
  :math:`\bar X = \Delta V^\top`, :math:`\bar\Delta = X V`, multiplied in the cheaper order:
  through the ``[B, B']`` Gram matrices :math:`\Delta \Delta'^\top` and :math:`X X'^\top`
  (:math:`2 B B' (n_{in} + n_{out})` multiply-adds) or through :math:`V` itself
  (:math:`n_{in} n_{out} (B' + 2B)`)."""
  b, n_in = x.shape
  b_val, n_out = delta_val.shape
  if 2 * b * b_val * (n_in + n_out) < n_in * n_out * (b_val + 2 * b):
    return (delta @ delta_val.T) @ x_val, (x @ x_val.T) @ delta_val
  v = x_val.T @ delta_val
  return delta @ v.T, x @ v


def _second_order_lowrank(objective: Objective, params, arch, rest, train_batch, val_batch, xi,
                          key_train, key_val, axis_name, layers):
  r"""The exact second-order hypergradient, with dense layers' gradients kept as factors.

  A dense layer's weight gradient is :math:`X^\top \Delta` (``taps``). The mixed second
  derivative applied to :math:`v = \nabla_{w'} L_{val}(w', \alpha)` is the alpha gradient of
  :math:`\langle \nabla_w L_{train}(w, \alpha), v\rangle`, whose dense-layer terms are

  .. math::  \langle X^\top \Delta, X'^\top \Delta' \rangle + \langle \mathbf 1^\top \Delta,
             \mathbf 1^\top \Delta' \rangle

  (:math:`X, \Delta` of the train pass at :math:`w`, functions of alpha; :math:`X', \Delta'` of
  the val pass at :math:`w'`). So the val pass needs no dense weight gradients, and the VJP
  runs through the train pass's layer inputs and output gradients, with cotangents from
  ``_lowrank_cotangents``, instead of through weight-shaped gradients. Other parameters
  (convolutions, parametric candidates) take the general route. Under ``axis_name``, the val
  factors of all devices are gathered, since :math:`v` is their mean.
  """
  leaves, treedef = jax.tree_util.tree_flatten(params)
  paths = _leaf_paths(params)
  train_layers, val_layers = layers
  role = [(p[:-2], p[-2]) if p[:-2] in train_layers and p[-2] in ("kernel", "bias") else None
          for p in paths]
  other = [i for i, r in enumerate(role) if r is None]

  def tapped(base, a, other_leaves, perturb, batch, key):
    full = list(base)
    for i, leaf in zip(other, other_leaves):
      full[i] = leaf
    tape = taps.Tape(perturb)
    loss, aux = objective(treedef.unflatten(full), a, rest, batch, key, tape=tape)
    return loss, (aux, tape.inputs)

  def zeros(shapes):
    return {p: jnp.zeros(s.shape, s.dtype) for p, s in shapes.items()}

  def train_factors(a):  # alpha -> (X, Delta, gradient of the other weights)
    (g_other, deltas), (aux, xs) = jax.grad(tapped, argnums=(2, 3), has_aux=True)(
        leaves, a, [leaves[i] for i in other], zeros(train_layers), train_batch, key_train)
    return (xs, deltas, g_other), aux

  (xs, deltas, g_other), pullback, (train_m, new_rest) = jax.vjp(train_factors, arch,
                                                                 has_aux=True)
  g_leaves = list(leaves)
  for i, leaf in zip(other, g_other):
    g_leaves[i] = leaf
  for i, r in enumerate(role):
    if r is not None:
      path, kind = r
      g_leaves[i] = (xs[path].T @ deltas[path] if kind == "kernel"
                     else jnp.sum(deltas[path], axis=0)).astype(leaves[i].dtype)
  g_w = pmean(treedef.unflatten(g_leaves), axis_name)
  train_m, new_rest = pmean(train_m, axis_name), pmean_floats(new_rest, axis_name)

  w_virtual = jax.tree.leaves(_sub(params, g_w, xi))
  grad_val = jax.grad(tapped, argnums=(1, 2, 3), has_aux=True)
  (da, v_other, delta_val), ((val_m, _), xs_val) = grad_val(
      w_virtual, arch, [w_virtual[i] for i in other], zeros(val_layers), val_batch, key_val)
  da, v_other, val_m = pmean((da, v_other, val_m), axis_name)
  if axis_name is not None:  # v is the mean over devices of X'^T Delta'
    n = jax.lax.psum(1, axis_name)
    gather = lambda t: jax.lax.all_gather(t, axis_name, axis=0, tiled=True)
    xs_val = jax.tree.map(gather, xs_val)
    delta_val = jax.tree.map(lambda t: gather(t) / n, delta_val)
  has_bias = {r[0] for r in role if r is not None and r[1] == "bias"}
  x_bar, delta_bar = {}, {}
  for path in xs:
    x_bar[path], delta_bar[path] = _lowrank_cotangents(xs[path], deltas[path], xs_val[path],
                                                       delta_val[path])
    if path in has_bias:
      delta_bar[path] = delta_bar[path] + jnp.sum(delta_val[path], axis=0)
  (h,) = pullback((x_bar, delta_bar, v_other))
  h = pmean(h, axis_name)
  return _sub(da, h, xi), g_w, train_m, val_m, new_rest


def unrolled_val_loss(objective: Objective, params, arch, rest, train_batch, val_batch, xi,
                      key_train=None, key_val=None):
  """The second-order objective :math:`L_{val}(w - \\xi \\nabla_w L_{train}(w, \\alpha), \\alpha)`.
  """
  g, _ = jax.grad(objective, has_aux=True)(params, arch, rest, train_batch, key_train)
  return objective(_sub(params, g, xi), arch, rest, val_batch, key_val)[0]


@dataclasses.dataclass(frozen=True, eq=False)
class StepFn:
  """A bilevel search step ``(state, train_batch, val_batch) -> (state, metrics)``."""
  objective: Objective
  tx_w: optax.GradientTransformation
  tx_a: optax.GradientTransformation
  schedule: optax.Schedule
  order: str = "first"
  xi: float | None = None
  stochastic: bool = False
  axis_name: str | None = None
  warmup_steps: int = 0
  temperature: optax.Schedule | None = None  # annealing: the relaxations' T at each step

  def __call__(self, state: SearchState, train_batch: Batch, val_batch: Batch):
    if self.temperature is not None:
      state = state.replace(rest=set_temperature(state.rest, self.temperature(state.step)))
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    k_train, k_val = jax.random.split(key) if self.stochastic else (None, None)
    # the two passes draw their own dropout masks (pass 0: train, 1: val) on each device
    k_train = training_pass(state.step, self.axis_name, 0, relax=k_train)
    k_val = training_pass(state.step, self.axis_name, 1, relax=k_val)
    xi = self.schedule(state.step) if self.xi is None else self.xi
    arch_active = state.step >= self.warmup_steps
    g_a, g_w, train_m, val_m, rest = hypergradient(
        self.objective, state.params, state.arch, state.rest, train_batch, val_batch,
        order=self.order, xi=xi, key_train=k_train, key_val=k_val, axis_name=self.axis_name,
        arch_active=arch_active)
    upd_w, opt_w = self.tx_w.update(g_w, state.opt_w, state.params)
    upd_a, opt_a = self.tx_a.update(g_a, state.opt_a, state.arch)
    arch = optax.apply_updates(state.arch, upd_a)
    if self.warmup_steps:  # weights only during warm-up: alpha and its optimizer stay put
      arch, opt_a = jax.tree.map(lambda new, old: jnp.where(arch_active, new, old),
                                 (arch, opt_a), (state.arch, state.opt_a))
    new = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, upd_w),
                        arch=arch, rest=rest, opt_w=opt_w, opt_a=opt_a)
    metrics = {**{f"train/{k}": v for k, v in train_m.items()},
               **{f"val_batch/{k}": v for k, v in val_m.items()},
               "train/lr": self.schedule(state.step)}
    return new, metrics


def set_temperature(rest, value):
  """``rest`` with every slot's relaxation temperature (variable ``tau``) set to ``value``."""
  def put(path, leaf):
    named = any(getattr(k, "key", None) == "tau" for k in path)
    return jnp.full_like(leaf, value) if named else leaf
  return jax.tree_util.tree_map_with_path(put, rest)


def temperature_schedule(t0: float, t1: float | None, total_steps: int) -> optax.Schedule | None:
  r"""Temperature annealing (GDAS, Dong & Yang 2019, anneal the Gumbel-softmax temperature
  during the search): geometric from :math:`T_0` to :math:`T_1` over the search,
  :math:`T(t) = T_0 (T_1 / T_0)^{t / N}`; None without :math:`T_1`."""
  if t1 is None:
    return None
  n = max(total_steps, 1)
  return lambda step: t0 * (t1 / t0) ** (jnp.minimum(step, n) / n)


def init_state(model: nnx.Module, tx_w, tx_a, seed: int) -> tuple[Any, SearchState]:
  """``graphdef, state`` of a supernet at step 0."""
  graphdef, params, arch, rest = split_model(model)
  state = SearchState(step=jnp.zeros((), jnp.int32), params=params, arch=arch, rest=rest,
                      opt_w=tx_w.init(params), opt_a=tx_a.init(arch),
                      rng=jax.random.key_data(jax.random.key(seed)))
  return graphdef, state
