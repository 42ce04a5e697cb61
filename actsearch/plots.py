"""Pictures that show a person why a search chose what it chose: PNG files and TensorBoard.

* ``weights_figure``: the final relaxed weights of every slot as a heatmap, the chosen
  candidate of each slot outlined, so one sees how clear each choice was.
* ``activations_figure``: the chosen activation of every slot drawn on ``[-4, 4]`` with its
  learned parameters, next to the runner-up, so one sees what the choice computes.
* ``custom_scalars_layout``: a TensorBoard custom-scalars layout that puts the weight curves
  of all candidates of a slot (the ``arch/<slot>/<candidate>`` scalars the search logs) in
  one chart, so one sees how the choice emerged during the search.

Drawing uses matplotlib's object API with the Agg canvas and never ``pyplot``: no global
state, no GUI backend, safe in threads and in processes that imported pyplot elsewhere.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from actsearch.train import files

if TYPE_CHECKING:  # matplotlib is imported where a picture is drawn: a run that draws none
  from matplotlib.figure import Figure  # (killed, or show) does not pay its 0.7 s import

WEIGHTS_PNG = "arch_weights.png"
ACTIVATIONS_PNG = "chosen_activations.png"
CATEGORY = "architecture"
ENTROPY_CHART = "entropy"
X_RANGE = (-4.0, 4.0)
_DPI = 110


def weight_tag(slot: str, candidate: str) -> str:
  """The scalar tag the search logs for the relaxed weight of ``candidate`` in ``slot``."""
  return f"arch/{slot}/{candidate}"


def entropy_tag(slot: str) -> str:
  """The scalar tag the search logs for the entropy of the weights of ``slot``."""
  return f"arch/{slot}/entropy"


def _exact(tag: str) -> str:
  """A regex matching exactly ``tag``: TensorBoard reads custom-scalar tags as regexes and
  matches them at the start only, so ``arch/s/gelu`` alone would also pull in
  ``arch/s/gelu_exact``."""
  return re.escape(tag) + "$"


def custom_scalars_layout(slot_names: Sequence[str],
                          candidates: Sequence[str]) -> dict[str, dict[str, list]]:
  """The layout for tensorboardX's ``SummaryWriter.add_custom_scalars``.

  One category ``"architecture"``: one Multiline chart per slot, titled with the slot name,
  holding the weight curves ``arch/<slot>/<candidate>`` of all candidates (how the choice
  emerged), plus one Multiline chart ``"entropy"`` with ``arch/<slot>/entropy`` of every slot
  (how fast each slot made up its mind). Each tag is given as an anchored, escaped regex,
  because TensorBoard treats these tags as regexes.
  """
  charts: dict[str, list] = {}
  for slot in slot_names:
    charts[slot] = ["Multiline", [_exact(weight_tag(slot, c)) for c in candidates]]
  charts[ENTROPY_CHART] = ["Multiline", [_exact(entropy_tag(s)) for s in slot_names]]
  return {CATEGORY: charts}


def add_layout(writer, slot_names: Sequence[str], candidates: Sequence[str]) -> None:
  """Adds ``custom_scalars_layout(slot_names, candidates)`` to a tensorboardX writer (once per
  writer: TensorBoard reads one layout per run)."""
  writer.add_custom_scalars(custom_scalars_layout(slot_names, candidates))


# ---------------------------------------------------------------------------
# Figures.


def _title(arch: Mapping[str, Any]) -> str:
  parts = []
  if arch.get("relaxation"):
    parts.append(f"{arch['relaxation']} relaxation")
  parts.append(f"{arch.get('discretize', 'argmax')} discretization")
  return f"Final relaxed weights ({', '.join(parts)})"


def _channel_summary(layer: Mapping[str, Any]) -> str:
  counts = Counter(layer["channel_choices"])
  return ", ".join(f"{n} {c}" for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


MAX_COLUMNS = 24  # a heatmap of more candidates shows these many (the largest weights)
MAX_BARS = 24  # the networks panel shows at most these many (the best)


def _columns(layers: Sequence[Mapping[str, Any]], cands: list[str],
             key: str = "weights") -> list[str]:
  """The candidates the heatmap shows: all of them, or, beyond ``MAX_COLUMNS``, the chosen
  ones and those with the largest weight (``key``) in any slot, in the record's order."""
  if len(cands) <= MAX_COLUMNS:
    return cands
  best = {c: max(float((layer.get(key) or {}).get(c, -np.inf)) for layer in layers)
          for c in cands}
  keep = {layer["choice"] for layer in layers}
  for c in sorted(cands, key=lambda c: -best[c]):
    if len(keep) >= MAX_COLUMNS:
      break
    keep.add(c)
  return [c for c in cands if c in keep]


def _evaluated(arch: Mapping[str, Any]) -> list[tuple[str, float, bool]]:
  """The shortlist's networks as ``(choices, val score, chosen)``, best first; empty when
  the record holds no list of evaluated networks."""
  sel = arch.get("selection") or {}
  nets = sel.get("evaluated")
  if not isinstance(nets, list) or not nets:
    return []
  names = [layer["name"] for layer in arch["layers"]]
  chosen = [layer["choice"] for layer in arch["layers"]]
  rows = []
  for net in nets:
    choices = [net["choices"].get(n, "?") for n in names]
    rows.append((" / ".join(choices), float(net["score"]), choices == chosen))
  return sorted(rows, key=lambda r: (not np.isfinite(r[1]), -r[1] if np.isfinite(r[1]) else 0))


def weights_figure(arch: Mapping[str, Any]) -> Figure:
  """A heatmap of the final relaxed weights (one row per slot, one column per candidate) and,
  beside it, the val scores of the networks the shortlist trained, when there are any.

  Each cell shows its weight (3 decimals); the colour scale runs from the smallest to the
  largest weight shown, so that weights that all lie near uniform still differ in colour. The
  chosen candidate of each row is outlined in red, so a near tie stands out from a clear win.
  With more than ``MAX_COLUMNS`` candidates the columns are the chosen ones and those of the
  largest weights (the title says how many are left out). Per-channel slots show the weights
  averaged over channels and, under the slot name, how many channels chose what. The
  shortlist panel draws one bar per trained network, best first, the chosen one in red: what
  decided, when the weights did not. A record without relaxed weights (a black-box strategy,
  the correlation rule, random activation) shows its candidates' scores instead.
  """
  layers = list(arch["layers"])
  every = list(dict.fromkeys([*arch["candidates"],
                              *(c for layer in layers for c in layer.get("candidates", []))]))
  key = "weights" if any(layer.get("weights") for layer in layers) else "scores"
  cands = _columns(layers, every, key)
  w = np.array([[float((layer.get(key) or {}).get(c, np.nan)) for c in cands]
                for layer in layers])
  w[~np.isfinite(w)] = np.nan  # a candidate never scored (or diverged): an empty cell
  finite = w[np.isfinite(w)]
  lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
  if hi - lo < 1e-6:
    lo, hi = lo - 0.01, hi + 0.01
  every_net = _evaluated(arch)
  nets = every_net[:MAX_BARS]
  width = min(3.0 + 0.75 * len(cands), 24.0)
  height = min(1.8 + 0.6 * len(layers), 40.0)
  side = 0.0 if not nets else 6.0
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  from matplotlib.patches import Rectangle

  fig = Figure(figsize=(max(width, 6.5) + side, max(height, 3.2, 1.4 + 0.28 * len(nets))),
               dpi=_DPI, layout="constrained")
  FigureCanvasAgg(fig)
  if nets:
    ax, bars = fig.subplots(1, 2, width_ratios=[max(width, 6.5), side])
  else:
    ax, bars = fig.add_subplot(), None
  image = ax.imshow(w, cmap="Blues", vmin=lo, vmax=hi, aspect="auto")
  ax.set_xticks(range(len(cands)), cands, rotation=30 if len(cands) > 6 else 0,
                ha="right" if len(cands) > 6 else "center")
  rows = [layer["name"] + (f"\nchannels: {_channel_summary(layer)}"
                           if layer.get("channel_choices") else "") for layer in layers]
  ax.set_yticks(range(len(layers)), rows)
  ax.set_xlabel("candidate   (outlined: the chosen one)")
  ax.set_ylabel("slot")
  ax.tick_params(length=0)
  font = 9 if len(cands) <= 10 else 7
  for i, layer in enumerate(layers):
    for j, value in enumerate(w[i]):
      if not np.isfinite(value):
        continue
      dark = (value - lo) / (hi - lo) > 0.55
      ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=font,
              color="white" if dark else "black",
              fontweight="bold" if cands[j] == layer["choice"] else "normal")
    if layer["choice"] in cands:
      j = cands.index(layer["choice"])
      ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1.0, 1.0, fill=False, edgecolor="crimson",
                             linewidth=3.0, clip_on=False, zorder=3))
  hidden = len(every) - len(cands)
  sel = arch.get("selection") or {}
  title = _title(arch) if key == "weights" else (
      f"Scores per candidate ({sel.get('method', 'strategy')}; no relaxed weights)")
  ax.set_title(title + (f"\n{len(cands)} of {len(every)} candidates shown (the "
                        f"largest {key})" if hidden else ""))
  what = "relaxed weight" if key == "weights" else "score"
  fig.colorbar(image, ax=ax, label=f"{what} (scale {lo:.3f} to {hi:.3f})", shrink=0.9)
  if nets:
    _shortlist_panel(bars, nets, (arch.get("selection") or {}).get("score", "val score"),
                     len(every_net), sel.get("simpler"))
  return fig


def _shortlist_panel(ax, nets: list[tuple[str, float, bool]], score: str, total: int,
                     simpler: Mapping[str, Any] | None = None) -> None:
  """Horizontal bars, one per trained network (best at the top), the chosen one in red; the
  axis spans the scores' range, so that close scores are told apart. When the
  one-standard-error rule chose (``simpler``), a dashed line marks the best score less one
  standard error: every network right of it was as good as the measurement tells."""
  labels = [n for n, _, _ in nets]
  values = np.array([v for _, v, _ in nets])
  y = np.arange(len(nets))
  finite = values[np.isfinite(values)] if np.isfinite(values).any() else np.zeros(1)
  low, high = float(finite.min()), float(finite.max())
  span = (high - low) or max(abs(high) * 0.01, 1e-3)
  base = low - 0.6 * span  # bars rise from the left edge, whatever the scores' sign
  values = np.where(np.isfinite(values), values, base)  # a diverged network: no bar
  ax.barh(y, values - base, left=base, height=0.7,
          color=["crimson" if c else "#4a7fb5" for _, _, c in nets])
  ax.set_xlim(base, high + 0.4 * span)
  ax.set_yticks(y, labels, fontsize=8 if len(nets) <= 16 else 6)
  ax.invert_yaxis()
  for yi, v, (_, raw, _) in zip(y, values, nets):
    ax.text(v, yi, f" {raw:.4g}", va="center", ha="left", fontsize=7)
  ax.set_xlabel(score)
  shown = f"the best {len(nets)} of {total}" if total > len(nets) else f"{total}"
  note = "(red: the chosen one)"
  if simpler:
    floor = float(simpler["best_score"]) - float(simpler["standard_error"])
    ax.axvline(floor, color="black", linestyle="--", linewidth=1.0)
    ax.set_xlim(min(base, floor - 0.1 * span), high + 0.4 * span)
    note = ("(red: the chosen one, the fewest learned\nactivation parameters right of the "
            "dashed line,\nthe best less one standard error)")
  ax.set_title(f"Networks trained: {shown}\n{note}")
  ax.grid(True, axis="x", alpha=0.3)


def _candidate(name: str):
  from actsearch.space import activations
  try:
    return activations.get(name)
  except activations.UnknownCandidateError:
    return None


def _params_for(layer: Mapping[str, Any], cand, picked_by: str | None) -> dict[str, np.ndarray]:
  """Learned parameters of ``cand`` in ``layer`` in their unit shapes (the initial values where
  none were saved): the learned curve, not the initial one.

  A per-channel parameter (a leading channel axis) is averaged over the channels that chose
  ``picked_by`` (all channels when none did or the lengths do not match).
  """
  from actsearch.space import activations

  saved = activations.params_from_record(
      {cand.name: layer.get("params", {}).get(cand.name, {})}).get(cand.name, {})
  chans = layer.get("channel_choices")
  out = {}
  for pname, default in cand.params.items():
    unit = np.shape(default)
    arr = np.asarray(saved.get(pname, default), np.float64)
    if arr.ndim == len(unit) + 1:  # per channel
      if chans is not None and len(chans) == arr.shape[0]:
        mask = np.array([c == picked_by for c in chans])
        if mask.any():
          arr = arr[mask]
      arr = arr.mean(0)
    out[pname] = arr
  return out


def _curve(cand, params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
  import jax.numpy as jnp
  kwargs = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
  return np.asarray(cand.fn(jnp.asarray(x, jnp.float32), **kwargs), np.float64)


def _label(name: str, params: Mapping[str, np.ndarray], layer: Mapping[str, Any]) -> str:
  if not params:
    return name
  saved = layer.get("params", {}).get(name, {})
  if any(np.ndim(v) for v in params.values()):
    return f"{name} ({'learned' if saved else 'initial'} shape)"
  text = ", ".join(
      f"{'mean ' if len(saved.get(p, {}).get('shape', [])) else ''}{p}={float(v):.2f}"
      for p, v in params.items())
  return f"{name} ({text})"


def decider(layer: Mapping[str, Any]) -> tuple[dict[str, float], str]:
  """What decided a slot: the per-candidate ``scores`` its selection measured (a screen, a
  race, perturbation; the finite ones, where there are at least two), else the supernet's
  relaxed ``weights``; and which of the two (``"score"`` or ``"weight"``)."""
  weights = {c: float(w) for c, w in (layer.get("weights") or {}).items()}
  scores = {c: float(v) for c, v in (layer.get("scores") or {}).items()
            if np.isfinite(float(v))}
  if len(scores) > 1 and scores != weights:  # argmax's scores are its weights
    return scores, "score"
  return weights, "weight"


def _decider(layer: Mapping[str, Any]) -> tuple[dict, str]:
  """What decided a slot (``decider``) and its short name in a legend."""
  values, kind = decider(layer)
  return values, ("score" if kind == "score" else "w")


def _digits(kind: str) -> str:
  return "4f" if kind == "score" else "2f"


def _runner_up(layer: Mapping[str, Any]) -> tuple[str, float, str] | None:
  """The candidate second to the choice by what decided (``_decider``)."""
  values, kind = _decider(layer)
  ranked = sorted(values.items(), key=lambda kv: -kv[1])
  return next(((c, v, kind) for c, v in ranked if c != layer["choice"]), None)


def activations_figure(arch: Mapping[str, Any]) -> Figure:
  """The chosen activation of every slot, one panel per slot, on x in [-4, 4].

  Each panel, titled ``"<slot>: <choice>"``, draws the choice with its learned parameters
  (e.g. the slope of a PReLU) as a solid line and, faint and dashed, the runner-up (the other
  candidate of largest weight) for contrast; the legend gives names, parameters and weights.
  A per-channel slot draws every distinct channel choice, with how many channels took it.
  Candidates not registered in this process are named in the panel but not drawn.
  """
  layers = list(arch["layers"])
  ncols = min(len(layers), 3)
  nrows = math.ceil(len(layers) / ncols)
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows), dpi=_DPI, layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
  x = np.linspace(*X_RANGE, 401)
  for ax, layer in zip(axes, layers):
    ax.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
    ax.axvline(0.0, color="0.75", linewidth=0.8, zorder=0)
    missing = []
    chans = layer.get("channel_choices")
    if chans:
      counts = Counter(chans)
      drawn = sorted(counts, key=lambda c: (-counts[c], c))
    else:
      counts, drawn = None, [layer["choice"]]
    for k, name in enumerate(drawn):
      cand = _candidate(name)
      if cand is None:
        missing.append(name)
        continue
      params = _params_for(layer, cand, name)
      label = _label(name, params, layer)
      if counts is not None:
        label += f"  \u00d7{counts[name]} ch"
      ax.plot(x, _curve(cand, params, x), color=f"C{k}", linewidth=2.2, label=label)
    runner = _runner_up(layer)
    if runner is not None:
      name, value, kind = runner
      cand = _candidate(name)
      if cand is None:
        missing.append(name)
      else:
        params = _params_for(layer, cand, name)
        label = f"runner-up: {_label(name, params, layer)}  {kind}={value:.{_digits(kind)}}"
        ax.plot(x, _curve(cand, params, x), color="black", linestyle=(0, (4, 3)), linewidth=1.3,
                alpha=0.55, zorder=3, label=label)
    if missing:
      ax.text(0.98, 0.03, "not registered here: " + ", ".join(missing), transform=ax.transAxes,
              ha="right", va="bottom", fontsize=8, color="crimson", zorder=4,
              bbox={"facecolor": "white", "edgecolor": "crimson", "alpha": 0.9})
    values, kind = _decider(layer)
    v_choice = float(values.get(layer["choice"], float("nan")))
    ax.set_title(f"{layer['name']}: {layer['choice']}", fontsize=11)
    ax.set_xlim(*X_RANGE)
    ax.set_xlabel(f"x   (choice {'score' if kind == 'score' else 'weight'} "
                  f"{v_choice:.{_digits(kind)}})" if np.isfinite(v_choice) else "x",
                  fontsize=9)
    ax.set_ylabel("activation(x)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
  for ax in axes[len(layers):]:
    ax.set_visible(False)
  fig.suptitle("Chosen activation per slot (dashed: runner-up of what decided"
               + (f", {arch['selection']['method']}" if isinstance(arch.get("selection"), dict)
                  and arch["selection"].get("method") else "") + ")")
  return fig


# ---------------------------------------------------------------------------
# Output.


def _rgba(fig: Figure) -> np.ndarray:
  """The figure drawn once by the Agg canvas: ``[H, W, 4]`` uint8."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg

  canvas = FigureCanvasAgg(fig)
  canvas.draw()
  return np.array(canvas.buffer_rgba(), dtype=np.uint8)


def _png(rgba: np.ndarray, dpi: float) -> bytes:
  """PNG file contents of a drawn figure, as the canvas's own ``print_png`` writes them."""
  from matplotlib import image

  buf = io.BytesIO()
  image.imsave(buf, rgba, format="png", dpi=dpi)
  return buf.getvalue()


def to_png_bytes(fig: Figure) -> bytes:
  """The figure as PNG file contents (Agg canvas, the figure's own size and dpi)."""
  return _png(_rgba(fig), fig.dpi)


def to_rgb(fig: Figure) -> np.ndarray:
  """The figure rendered by the Agg canvas as an ``[H, W, 3]`` uint8 array."""
  return _rgba(fig)[..., :3].copy()


def preload() -> None:
  """Imports matplotlib in a background thread (about 1 s on a 2-core machine), so that a
  search that ends with pictures has it loaded by then: the import runs while the search's
  steps compile, which release the interpreter."""
  import threading

  def load():
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401
  threading.Thread(target=load, name="actsearch-preload-matplotlib", daemon=True).start()


def write(run_dir: str, arch: Mapping[str, Any], writer=None, step: int = 0) -> list[str]:
  """Writes ``run_dir/arch_weights.png`` (``weights_figure``) and
  ``run_dir/chosen_activations.png`` (``activations_figure``), each whole or not at all; with
  a tensorboardX ``SummaryWriter`` also adds them as images ``arch/weights`` and
  ``arch/chosen_activations`` at ``step``. Returns the paths written."""
  os.makedirs(run_dir, exist_ok=True)
  paths = []
  for name, tag, make in ((WEIGHTS_PNG, "arch/weights", weights_figure),
                          (ACTIVATIONS_PNG, "arch/chosen_activations", activations_figure)):
    fig = make(arch)
    rgba = _rgba(fig)  # drawn once for the file and the event (a draw takes 0.3 s)
    path = os.path.join(run_dir, name)
    files.write_bytes_atomic(path, _png(rgba, fig.dpi))
    paths.append(path)
    if writer is not None:
      writer.add_image(tag, rgba[..., :3].copy(), step, dataformats="HWC")
  return paths
