r"""The one objective: a model graph's loss and metrics on a batch, for every command.

Search (both passes of a bilevel step), evaluation, retrain and bench call the same
function. Classification uses the cross-entropy of integer labels,
:math:`\ell_i = -\log \mathrm{softmax}(f(x_i))_{y_i}`; regression the squared error averaged
over outputs, :math:`\ell_i = \frac1m \lVert f(x_i) - y_i \rVert^2`; or the user's own
per-example loss ``data.loss`` (``losses.py``). A training loss is the
mean of :math:`\ell_i` over the batch; an evaluation sums :math:`\ell_i` (and correct
predictions) over the unmasked examples, so that padded batches and devices add up exactly.

A call returns the model's non-weight state after the forward pass (``rest``: batch
statistics, once a backbone has them; constants of fixed slots), which the steps keep.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from actsearch.models import taps
from actsearch.space.mixed import ArchParam
from actsearch.train import losses

Batch = dict[str, jax.Array]
CLASSIFICATION = "classification"


def split_model(model: nnx.Module):
  """``graphdef, params, arch, rest`` of a model: weights, alpha, everything else."""
  return nnx.split(model, nnx.Param, ArchParam, ...)


def per_example(out: jax.Array, y: jax.Array, task: str,
                loss: str = losses.AUTO) -> dict[str, jax.Array]:
  """``{"loss": [B], "correct": [B]}`` (classification) or ``{"loss": [B]}`` (regression)."""
  terms = {"loss": losses.per_example(loss, task, out, y)}
  if task == CLASSIFICATION:
    terms["correct"] = (jnp.argmax(out, -1) == y).astype(jnp.float32)
  return terms


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
  """``objective(params, arch, rest, batch, key) -> (loss, (metrics, rest))``."""
  graphdef: Any
  task: str
  loss: str = losses.AUTO  # data.loss: auto (the task's) or a registered loss's name

  def apply(self, params, arch, rest, x: jax.Array, key: jax.Array | None, *,
            train: bool = True, tape: taps.Tape | None = None):
    """The model's outputs and its non-weight state after the call."""
    model = nnx.merge(self.graphdef, params, arch, rest)
    if tape is None:
      out = model(x, key, train=train)
    else:
      with tape.watching(model):
        out = model(x, key, train=train)
    return out, nnx.state(model, nnx.Not(nnx.Any(nnx.Param, ArchParam)))

  def __call__(self, params, arch, rest, batch: Batch, key: jax.Array | None = None, *,
               train: bool = True, tape: taps.Tape | None = None):
    out, rest = self.apply(params, arch, rest, batch["x"], key, train=train, tape=tape)
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
