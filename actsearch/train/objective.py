r"""The one objective: a model graph's loss and metrics on a batch, for every command.

Search (both passes of a bilevel step), evaluation, retrain and bench call the same
function. Classification uses the cross-entropy of integer labels,
:math:`\ell_i = -\log \mathrm{softmax}(f(x_i))_{y_i}`; regression the squared error averaged
over outputs, :math:`\ell_i = \frac1m \lVert f(x_i) - y_i \rVert^2`; or the user's own
per-example loss ``data.loss`` (``losses.py``). A training loss is the
mean of :math:`\ell_i` over the batch; an evaluation sums :math:`\ell_i` (and correct
predictions) over the unmasked examples, so that padded batches and devices add up exactly.

A call returns the model's non-weight state after the forward pass (``rest``: batch
statistics; constants of fixed slots; random streams as stored), which the steps keep. The
model is rebuilt for each call by ``models.network.merge``: copies of the variables, the
pass's mode (train for a training pass, eval for ``sums``), batch norm over the step's device
axis, streams reseeded by the step's draw (a ``Pass``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from actsearch.data.inputs import IDENTITY, Inputs
from actsearch.models import network, taps
from actsearch.train import losses

Batch = dict[str, jax.Array]
CLASSIFICATION = "classification"


@struct.dataclass
class Pass:
  """What one training pass of a step draws and shares: ``relax``, the key of stochastic
  relaxations (the same on every device; None: deterministic); ``draw``, integers folded into
  every random stream's key (the step, the device, the pass; ``network.merge``);
  ``axis_name``, the device axis batch norm reduces over."""
  relax: Any = None
  draw: Any = None
  axis_name: str | None = struct.field(pytree_node=False, default=None)


def training_pass(step, axis_name: str | None, *more, relax=None) -> Pass:
  """The ``Pass`` of a step's training pass on this device: draw ``(step, device, *more)``
  (device: the index on ``axis_name``, 0 without one)."""
  device = 0 if axis_name is None else jax.lax.axis_index(axis_name)
  return Pass(relax=relax, draw=jnp.stack([jnp.asarray(v, jnp.uint32)
                                           for v in (step, device, *more)]),
              axis_name=axis_name)


def per_example(out: jax.Array, y: jax.Array, task: str,
                loss: str = losses.AUTO) -> dict[str, jax.Array]:
  """``{"loss": [B], "correct": [B]}`` (classification) or ``{"loss": [B]}`` (regression)."""
  terms = {"loss": losses.per_example(loss, task, out, y)}
  if task == CLASSIFICATION:
    terms["correct"] = (jnp.argmax(out, -1) == y).astype(jnp.float32)
  return terms


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
  """``objective(params, arch, rest, batch, key) -> (loss, (metrics, rest))``; ``key``: a
  ``Pass``, or the key of stochastic relaxations alone (None: deterministic). The batch's
  ``x`` is as stored; ``inputs`` makes the network's input of it (normalised; in a training
  pass whose batch carries each example's index ``i`` and ``epoch``, augmented first)."""
  graphdef: Any
  task: str
  loss: str = losses.AUTO  # data.loss: auto (the task's) or a registered loss's name
  inputs: Inputs = IDENTITY

  @classmethod
  def of(cls, graphdef, splits) -> Objective:
    """The objective of a network on a ``data.Splits``: its task, loss and inputs."""
    return cls(graphdef, splits.task, splits.loss, splits.inputs)

  def apply(self, params, arch, rest, x: jax.Array, key: jax.Array | None, *,
            train: bool = True, tape: taps.Tape | None = None):
    """The model's outputs and its non-weight state after the call."""
    p = key if isinstance(key, Pass) else Pass(relax=key)
    x = self.inputs.normalise(x)
    model = network.merge(self.graphdef, params, arch, rest, train=train,
                          axis_name=p.axis_name, draw=None if p.draw is None else list(p.draw))
    if tape is None:
      out = model(x, p.relax, train=train)
    else:
      with tape.watching(model):
        out = model(x, p.relax, train=train)
    return out, network.rest_after(model, rest)

  def __call__(self, params, arch, rest, batch: Batch, key: jax.Array | None = None, *,
               train: bool = True, tape: taps.Tape | None = None):
    x = batch["x"]
    if train and "i" in batch and self.inputs.augments:
      x = self.inputs.augment(x, batch["i"], batch["epoch"])
    out, rest = self.apply(params, arch, rest, x, key, train=train, tape=tape)
    terms = per_example(out, batch["y"], self.task, self.loss)
    metrics = {"loss": jnp.mean(terms["loss"])}
    if "correct" in terms:
      metrics["accuracy"] = jnp.mean(terms["correct"])
    return metrics["loss"], (metrics, rest)

  def sums(self, params, arch, rest, batch: Batch, mask: jax.Array) -> dict[str, jax.Array]:
    """Summed loss (and correct predictions) and the count of the unmasked examples,
    in evaluation mode (``train=False``, deterministic relaxation)."""
    out, _ = self.apply(params, arch, rest, batch["x"], None, train=False)
    terms = per_example(out, batch["y"], self.task, self.loss)
    sums = {k: jnp.sum(v * mask) for k, v in terms.items()}
    sums["count"] = jnp.sum(mask)
    return sums


def finish(totals: dict[str, float]) -> dict[str, float]:
  """Mean loss (and accuracy) from the sums of ``Objective.sums``."""
  out = {"loss": totals["loss"] / totals["count"]}
  if "correct" in totals:
    out["accuracy"] = totals["correct"] / totals["count"]
  return out
