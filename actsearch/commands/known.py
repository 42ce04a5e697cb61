"""``actsearch known [KIND ...]``: what a config can name, kind by kind (the registries:
``actsearch.registry``), each entry with where it comes from (built in, or the user code that
registered it: pass the same ``--import`` to list a user's own) and its one-line
documentation."""

from __future__ import annotations

from collections.abc import Sequence

from actsearch.errors import UserError
from actsearch.registry import Registry


def registries() -> dict[str, Registry]:
  """Every registry, by the name ``known`` lists it under."""
  from actsearch.data.datasets import DATASETS
  from actsearch.models.registry import BACKBONES
  from actsearch.space.activations import CANDIDATES
  from actsearch.strategies.table import STRATEGIES
  from actsearch.train.losses import LOSSES
  return {"candidates": CANDIDATES, "backbones": BACKBONES, "losses": LOSSES,
          "datasets": DATASETS, "strategies": STRATEGIES}


def text(kinds: Sequence[str] = ()) -> str:
  """The listing of ``kinds`` (default: every kind)."""
  regs = registries()
  unknown = [k for k in kinds if k not in regs]
  if unknown:
    raise UserError(f"actsearch known: unknown kind {unknown[0]!r}; known: {', '.join(regs)}")
  out = []
  for kind in kinds or list(regs):
    reg = regs[kind]
    rows = reg.listing()
    width = max([len(n) for n, _, _ in rows] + [4])
    out.append(f"{kind} ({reg.key}): {len(rows)}")
    out += [f"  {n:<{width}}  {doc}" + ("" if where == "built in" else f"  [{where}]")
            for n, where, doc in rows]
  return "\n".join(out)
