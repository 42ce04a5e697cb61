"""``actsearch candidates``: the registered candidates as a table grouped by kind (fixed,
parametric, learned): name, formula, parameters with their initial values, whether the fused
path computes it, the family it is counted with, and its source."""

from __future__ import annotations

import numpy as np

from actsearch.space import activations, fused
from actsearch.space import families as fam


def _params(cand: activations.Candidate) -> str:
  if not cand.params:
    return "-"
  if cand.init is not None:
    return ", ".join(f"{p}[{'x'.join(map(str, np.shape(v))) or '1'}]" for p, v in
                     cand.params.items()) + " random"
  out = []
  for p, v in cand.params.items():
    arr = np.asarray(v)
    out.append(f"{p}={float(arr):g}" if arr.ndim == 0 else
               f"{p}[{arr.size}]=" + ",".join(f"{float(x):.3g}" for x in arr.ravel()))
  return ", ".join(out)


def rows(candidates=None) -> list[tuple[str, ...]]:
  """``(kind, name, formula, parameters, fused, family, source)`` per candidate."""
  cands = activations.all_candidates() if candidates is None else candidates
  return [(c.kind, c.name, c.formula, _params(c), "yes" if fused.covers(c) else "no",
           c.family or "", c.source or (c.code or "")) for c in cands]


def text() -> str:
  table = rows()
  head = ("name", "formula", "parameters (initial)", "fused", "counted with", "source")
  out = []
  for kind in activations.KINDS:
    body = [r[1:] for r in table if r[0] == kind]
    if not body:
      continue
    widths = [min(max(len(x[i]) for x in [head, *body]), 60) for i in range(len(head))]
    out.append(f"{kind} ({len(body)})")
    for r in [head, *body]:
      out.append("  " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    out.append("")
  reps = fam.representatives(activations.all_candidates())
  learned = sum(c.kind == "learned" for c in reps.values())
  out.append(f"{len(activations.names())} candidates; {len(reps) - learned} distinct families of "
             f"fixed and parametric ones (no two equal up to an affine map a f(b x + c) + d on "
             f"[-5, 5] within RMS {fam.DISTINCT:g}; a parametric family counted once) and "
             f"{learned} learned families; sized members: maxout_kN, apl_sN, nn_act_wN; groups: "
             + ", ".join(activations.GROUPS))
  return "\n".join(out)
