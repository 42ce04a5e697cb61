"""actsearch.plots: the PNG files, the TensorBoard images and the custom-scalars layout."""

import io
import os
import re

import numpy as np
import pytest
from matplotlib import image as mpimg
from matplotlib.patches import Rectangle

from actsearch import architecture, plots

CANDS = ["relu", "gelu", "sin", "prelu"]
SLOTS = ["block0/act", "block1/act"]


def record(**extra):
  """2 slots; slot 0 chose prelu with a learned slope 0.2 (default 0.25), slot 1 is per channel."""
  layers = [
      {"name": "block0/act", "choice": "prelu",
       "weights": {"relu": 0.30, "gelu": 0.10, "sin": 0.05, "prelu": 0.55},
       "params": {"prelu": {"slope": {"shape": [], "value": 0.2}}}},
      {"name": "block1/act", "choice": "gelu",
       "weights": {"relu": 0.20, "gelu": 0.45, "sin": 0.30, "prelu": 0.05},
       "params": {}, "channel_choices": ["gelu", "gelu", "sin", "gelu", "relu"]},
  ]
  arch = architecture.make(layers, candidates=CANDS, relaxation="softmax",
                           granularity="channel", model={}, data={}, metrics={}, seed=0)
  arch.update(extra)
  return architecture.validate(arch)


def logged_tags(slots, cands):
  """Every scalar tag the search logs for these slots (see ``supernet.arch_scalars``)."""
  return [f"arch/{s}/{c}" for s in slots for c in cands] + [f"arch/{s}/entropy" for s in slots]


def check_layout_charts(charts, slots, cands):
  """``charts``: title -> list of tag regexes. One chart per slot plus "entropy"; each regex
  picks (as TensorBoard does, ``re.match``) exactly one logged tag, the one it stands for."""
  assert sorted(charts) == sorted([*slots, "entropy"])
  everything = logged_tags(slots, cands)
  for slot in slots:
    regexes = charts[slot]
    assert len(regexes) == len(cands)
    for regex, cand in zip(regexes, cands):
      assert [t for t in everything if re.match(regex, t)] == [f"arch/{slot}/{cand}"]
  assert [[t for t in everything if re.match(r, t)] for r in charts["entropy"]] == [
      [f"arch/{s}/entropy"] for s in slots]


# --- layout -----------------------------------------------------------------------------------

LAYOUT_CASES = [
    (SLOTS, CANDS),
    (["s"], ["gelu", "gelu_exact", "relu", "relu6"]),  # a name that is a prefix of another
    (["a.b", "aXb"], ["relu", "sin"]),                  # regex metacharacters in slot names
    (["only"], ["relu"]),
]


@pytest.mark.parametrize("slots,cands", LAYOUT_CASES)
def test_layout_one_multiline_chart_per_slot_with_every_candidate(slots, cands):
  layout = plots.custom_scalars_layout(slots, cands)
  assert list(layout) == ["architecture"]
  charts = layout["architecture"]
  assert len(charts) == len(slots) + 1  # no chart per candidate
  assert all(kind == "Multiline" for kind, _ in charts.values())
  check_layout_charts({title: tags for title, (_, tags) in charts.items()}, slots, cands)


def test_add_layout_passes_the_layout_to_the_writer():
  calls = []

  class Writer:
    def add_custom_scalars(self, layout):
      calls.append(layout)

  plots.add_layout(Writer(), SLOTS, CANDS)
  assert calls == [plots.custom_scalars_layout(SLOTS, CANDS)]


# --- files ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("run"))
  return run_dir, plots.write(run_dir, record())


def test_write_returns_the_two_paths(written):
  run_dir, paths = written
  assert paths == [os.path.join(run_dir, "arch_weights.png"),
                   os.path.join(run_dir, "chosen_activations.png")]
  assert sorted(os.listdir(run_dir)) == ["arch_weights.png", "chosen_activations.png"]


@pytest.mark.parametrize("name", ["arch_weights.png", "chosen_activations.png"])
def test_written_png_is_a_readable_non_blank_picture(written, name):
  run_dir, _ = written
  img = mpimg.imread(os.path.join(run_dir, name))
  assert img.ndim == 3 and img.shape[2] in (3, 4)
  assert img.shape[0] > 200 and img.shape[1] > 200
  assert float(img[..., :3].std()) > 0.05


@pytest.mark.parametrize("make", [plots.weights_figure, plots.activations_figure])
def test_to_rgb_is_the_png_picture(make):
  fig = make(record())
  rgb = plots.to_rgb(fig)
  png = mpimg.imread(io.BytesIO(plots.to_png_bytes(fig)), format="png")
  assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
  assert rgb.shape[:2] == png.shape[:2]
  diff = np.abs(rgb.astype(int) - np.round(png[..., :3] * 255).astype(int))
  # Equal up to antialiasing: a second draw may re-run the layout with sub-pixel shifts.
  assert diff.mean() < 0.5 and (diff > 8).mean() < 0.002


def test_write_is_atomic(tmp_path, monkeypatch):
  old = tmp_path / "arch_weights.png"
  old.write_bytes(b"old picture")

  def fail(src, dst):
    raise OSError("disk full")

  monkeypatch.setattr(plots.os, "replace", fail)
  with pytest.raises(OSError, match="disk full"):
    plots.write(str(tmp_path), record())
  assert old.read_bytes() == b"old picture"
  assert sorted(os.listdir(tmp_path)) == ["arch_weights.png"]  # no temporary file left


# --- what the pictures show -------------------------------------------------------------------

TITLE_CASES = [
    ({}, ["softmax relaxation", "argmax discretization"]),
    ({"relaxation": "gumbel", "discretize": "topk"}, ["gumbel relaxation", "topk discretization"]),
]


@pytest.mark.parametrize("extra,needles", TITLE_CASES)
def test_weights_title_names_relaxation_and_discretization(extra, needles):
  title = plots.weights_figure(record(**extra)).axes[0].get_title()
  for needle in needles:
    assert needle in title


def test_weights_title_without_relaxation_defaults_discretize():
  arch = record()
  del arch["relaxation"], arch["discretize"]
  title = plots.weights_figure(arch).axes[0].get_title()
  assert "argmax discretization" in title and "relaxation" not in title


def test_weights_cells_are_annotated_and_choices_outlined():
  arch = record()
  ax = plots.weights_figure(arch).axes[0]
  cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
           for t in ax.texts}
  want = {(i, j): f"{layer['weights'][c]:.3f}"
          for i, layer in enumerate(arch["layers"]) for j, c in enumerate(CANDS)}
  assert cells == want
  outlined = sorted((round(p.get_y() + 0.5), round(p.get_x() + 0.5))
                    for p in ax.patches if isinstance(p, Rectangle) and p.get_visible()
                    and not p.get_fill() and p.get_linewidth() >= 2)
  assert outlined == [(0, CANDS.index("prelu")), (1, CANDS.index("gelu"))]
  assert [t.get_text() for t in ax.get_xticklabels()] == CANDS
  labels = [t.get_text() for t in ax.get_yticklabels()]
  assert labels[0] == "block0/act"
  assert labels[1].startswith("block1/act") and "3 gelu, 1 relu, 1 sin" in labels[1]


def test_weights_figure_ignores_scores():
  arch = record()
  plain = plots.to_rgb(plots.weights_figure(arch))
  for layer in arch["layers"]:
    layer["scores"] = {c: 123.456 for c in CANDS}
  np.testing.assert_array_equal(plots.to_rgb(plots.weights_figure(arch)), plain)


def test_a_record_without_weights_shows_its_scores():
  # a black-box strategy's record: scores of the candidates its evaluated networks used
  arch = record(relaxation=None, selection={"method": "evolution", "score": "val accuracy",
                                            "seconds": 1.0})
  for layer, scores in zip(arch["layers"], ({"relu": 0.91, "sin": 0.85},
                                            {"gelu": 0.93, "relu": 0.90})):
    del layer["weights"]
    layer["scores"] = scores
  ax = plots.weights_figure(arch).axes[0]
  assert "Scores per candidate (evolution" in ax.get_title()
  cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
           for t in ax.texts}
  assert cells == {(0, CANDS.index("relu")): "0.910", (0, CANDS.index("sin")): "0.850",
                   (1, CANDS.index("gelu")): "0.930", (1, CANDS.index("relu")): "0.900"}
  panel = plots.activations_figure(arch).axes[0]
  assert panel.get_xlabel() == "x"  # the choice has no score: no "score nan"
  assert "runner-up: relu  score=0.9100" in lines_by_label(panel)


def test_the_runner_up_is_the_runner_up_of_what_decided():
  # a screen chose prelu; the supernet's weights put relu second, the screen's scores sin
  arch = record(selection={"method": "screen", "score": "val accuracy", "seconds": 1.0})
  arch["layers"][0]["scores"] = {"relu": 0.80, "gelu": 0.70, "sin": 0.85, "prelu": 0.90}
  fig = plots.activations_figure(arch)
  assert set(lines_by_label(fig.axes[0])) == {"prelu (slope=0.20)",
                                              "runner-up: sin  score=0.8500"}
  assert fig.axes[0].get_xlabel() == "x   (choice score 0.9000)"
  assert "runner-up: sin  w=0.30" in lines_by_label(fig.axes[1])  # no scores: the weights
  assert "what decided, screen" in fig.get_suptitle()


def lines_by_label(ax):
  return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def y_at(line, x):
  return float(np.interp(x, line.get_xdata(), line.get_ydata()))


def test_activations_one_panel_per_slot_titled_with_the_choice():
  axes = [ax for ax in plots.activations_figure(record()).axes if ax.get_visible()]
  assert [ax.get_title() for ax in axes] == ["block0/act: prelu", "block1/act: gelu"]
  for ax in axes:
    assert ax.get_xlim() == (-4.0, 4.0)


def test_activations_use_learned_params_and_show_runner_up():
  ax = plots.activations_figure(record()).axes[0]
  lines = lines_by_label(ax)
  assert set(lines) == {"prelu (slope=0.20)", "runner-up: relu  w=0.30"}
  chosen = lines["prelu (slope=0.20)"]
  assert y_at(chosen, -4.0) == pytest.approx(-0.8, abs=1e-5)  # learned 0.2, not default 0.25
  assert y_at(chosen, 3.0) == pytest.approx(3.0, abs=1e-5)
  runner = lines["runner-up: relu  w=0.30"]
  assert runner.get_linestyle() != "-"
  assert y_at(runner, -4.0) == pytest.approx(0.0) and y_at(runner, 2.0) == pytest.approx(2.0)


def test_activations_draw_every_channel_choice_with_a_legend():
  ax = plots.activations_figure(record()).axes[1]
  legend = [t.get_text() for t in ax.get_legend().get_texts()]
  assert legend == ["gelu  \u00d73 ch", "relu  \u00d71 ch", "sin  \u00d71 ch",
                    "runner-up: sin  w=0.30"]
  lines = lines_by_label(ax)
  assert y_at(lines["sin  \u00d71 ch"], np.pi / 2) == pytest.approx(1.0, abs=1e-4)
  assert y_at(lines["relu  \u00d71 ch"], -2.0) == pytest.approx(0.0)


def test_per_channel_params_are_averaged_over_the_channels_that_chose_the_candidate():
  arch = record()
  arch["layers"][1].update(choice="prelu", channel_choices=["prelu", "relu", "prelu"],
                           params={"prelu": {"slope": {"shape": [3], "value": [0.1, 9.0, 0.3]}}})
  lines = lines_by_label(plots.activations_figure(arch).axes[1])
  chosen = lines["prelu (mean slope=0.20)  \u00d72 ch"]
  assert y_at(chosen, -4.0) == pytest.approx(-0.8, abs=1e-5)


def test_a_learned_shape_is_drawn_with_its_learned_parameters():
  """A PAU slot: the curve drawn is the learned rational function, not its initial one."""
  arch = record()
  num = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]  # x^2 / (1 + 0): the learned shape is a parabola
  arch["layers"][0].update(choice="pau", params={"pau": {
      "num": {"shape": [6], "value": num}, "den": {"shape": [4], "value": [0.0] * 4}}})
  arch["layers"][0]["weights"] = {"relu": 0.3, "gelu": 0.1, "sin": 0.05, "prelu": 0.05,
                                  "pau": 0.5}
  arch["layers"][0]["candidates"] = [*CANDS, "pau"]
  lines = lines_by_label(plots.activations_figure(arch).axes[0])
  assert y_at(lines["pau (learned shape)"], -2.0) == pytest.approx(4.0, abs=1e-3)


def test_runner_up_is_the_best_candidate_other_than_the_choice():
  arch = record()
  arch["layers"][0]["choice"] = "gelu"  # not the argmax: the runner-up is then prelu
  labels = set(lines_by_label(plots.activations_figure(arch).axes[0]))
  assert labels == {"gelu", "runner-up: prelu (slope=0.20)  w=0.55"}


# --- TensorBoard ------------------------------------------------------------------------------


def test_tensorboard_reads_images_and_layout(tmp_path):
  from tensorboard.backend.event_processing import event_accumulator as ea
  from tensorboard.plugins.custom_scalar import layout_pb2
  from tensorboard.plugins.custom_scalar import metadata as cs_metadata
  from tensorboardX import SummaryWriter

  logdir = str(tmp_path / "tb")
  w = SummaryWriter(logdir=logdir)
  plots.write(str(tmp_path / "run"), record(), writer=w, step=7)
  plots.add_layout(w, SLOTS, CANDS)
  w.close()

  acc = ea.EventAccumulator(logdir, size_guidance={ea.IMAGES: 0, ea.TENSORS: 0})
  acc.Reload()
  tags = acc.Tags()
  assert sorted(tags["images"]) == ["arch/chosen_activations", "arch/weights"]
  for tag in tags["images"]:
    (event,) = acc.Images(tag)
    assert event.step == 7 and event.width > 200 and event.height > 200

  # tensorboardX writes the layout as a string tensor tagged custom_scalars__config__, with
  # plugin metadata "custom_scalars": the reader lists it under "tensors".
  assert cs_metadata.CONFIG_SUMMARY_TAG in tags["tensors"]
  meta = acc.SummaryMetadata(cs_metadata.CONFIG_SUMMARY_TAG)
  assert meta.plugin_data.plugin_name == cs_metadata.PLUGIN_NAME
  (event,) = acc.Tensors(cs_metadata.CONFIG_SUMMARY_TAG)
  layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
  (category,) = layout.category
  assert category.title == "architecture"
  charts = {}
  for chart in category.chart:
    assert chart.WhichOneof("content") == "multiline"
    charts[chart.title] = list(chart.multiline.tag)
  check_layout_charts(charts, SLOTS, CANDS)


# --- the colour scale, many candidates, the shortlist panel -----------------------------------

def shortlisted(scores):
  """``record()`` whose selection trained one network per (slot 0, slot 1) pair of scores."""
  nets = [{"choices": {"block0/act": a, "block1/act": b}, "score": s}
          for (a, b), s in scores.items()]
  return record(discretize="shortlist",
                selection={"method": "shortlist", "score": "val accuracy", "seconds": 1.0,
                           "evaluated": nets})


def test_the_colour_scale_runs_over_the_weights_not_to_one():
  image = plots.weights_figure(record()).axes[0].images[0]
  assert image.get_clim() == pytest.approx((0.05, 0.55))


def test_beyond_the_column_limit_the_largest_weights_and_the_choices_are_shown():
  cands = [f"c{i}" for i in range(40)]
  weights = {c: 0.001 * (i + 1) for i, c in enumerate(cands)}
  layers = [{"name": "s", "choice": "c0", "weights": weights}]
  arch = {"candidates": cands, "layers": layers}
  ax = plots.weights_figure(arch).axes[0]
  shown = [t.get_text() for t in ax.get_xticklabels()]
  assert len(shown) == plots.MAX_COLUMNS and "c0" in shown and "c39" in shown
  assert shown == [c for c in cands if c in shown]  # the record's order
  assert f"{plots.MAX_COLUMNS} of 40 candidates shown" in ax.get_title()


def test_the_shortlist_panel_ranks_the_networks_and_marks_the_chosen_one():
  arch = shortlisted({("prelu", "gelu"): 0.91, ("relu", "gelu"): 0.93, ("prelu", "sin"): 0.90,
                      ("relu", "sin"): float("nan")})
  heat, bars = plots.weights_figure(arch).axes[:2]
  assert [t.get_text() for t in bars.get_yticklabels()] == [
      "relu / gelu", "prelu / gelu", "prelu / sin", "relu / sin"]
  reds = [p for p in bars.patches if p.get_facecolor()[:3] == pytest.approx((0.863, 0.078, 0.235),
                                                                            abs=1e-3)]
  assert len(reds) == 1 and round(reds[0].get_y() + reds[0].get_height() / 2) == 1
  left, right = bars.get_xlim()
  assert 0.85 < left < 0.90 and 0.93 < right < 0.95  # fitted to the scores' range
  assert "val accuracy" in bars.get_xlabel()


def test_without_a_list_of_networks_there_is_no_panel():
  assert len([a for a in plots.weights_figure(record()).axes if a.images]) == 1
  assert len(plots.weights_figure(record()).axes) == 2  # the heatmap and its colour bar


def test_the_shortlist_panel_marks_the_one_standard_error_line_when_the_rule_chose():
  arch = shortlisted({("prelu", "gelu"): 0.91, ("relu", "gelu"): 0.93})
  arch["selection"]["simpler"] = {"rule": "one standard error",
                                  "best": {"block0/act": "relu", "block1/act": "gelu"},
                                  "best_score": 0.93, "standard_error": 0.05,
                                  "best_parameters": 10, "parameters": 0}
  bars = plots.weights_figure(arch).axes[1]
  [line] = bars.get_lines()
  assert line.get_xdata()[0] == pytest.approx(0.88) and line.get_linestyle() == "--"
  assert bars.get_xlim()[0] < 0.88  # the line is inside the axis
  assert "one standard error" in bars.get_title()
  del arch["selection"]["simpler"]  # the best chosen: no line
  assert not plots.weights_figure(arch).axes[1].get_lines()
