"""`actsearch bench` runs and writes every figure the issue asks for (no timing asserted)."""

import json

import pytest

from actsearch import cli

KEYS = {"fixed_fwd_bwd_ms", "mixed_fwd_bwd_ms", "fixed_train_step_ms", "search_step_first_ms",
        "search_step_second_ms", "compile_s", "fixed_step_temp_mb", "search_step_temp_mb",
        "mixed_over_fixed_fwd_bwd", "second_over_first_step", "search_over_fixed_temp_mb"}


@pytest.mark.slow  # compiles both implementations' four steps of the CNN (45-60 s)
def test_bench_writes_all_figures_and_a_table(tmp_path, capsys):
  out = tmp_path / "bench.json"
  assert cli.main(["bench", "--cases", "mnist1d_cnn", "--repeats", "2", "--out", str(out)]) == 0
  report = json.loads(out.read_text())
  figures = report["results"]["mnist1d_cnn"]
  assert KEYS <= set(figures)
  assert all(v > 0 for v in figures.values())
  assert figures["mixed_over_fixed_fwd_bwd"] == figures["mixed_fwd_bwd_ms"] / figures[
      "fixed_fwd_bwd_ms"]
  # The other implementation beside the default, against the same fixed network's timings.
  assert report["implementation"] == "kernel" and report["other_implementation"] == "xla"
  other = report["results"]["mnist1d_cnn (xla)"]
  assert KEYS <= set(other)
  assert other["fixed_train_step_ms"] == figures["fixed_train_step_ms"]
  assert report["cpu"]["model"] and report["cpu"]["cores"] >= 1
  table = capsys.readouterr().out
  assert "| search_step_second_ms" in table and "mnist1d_cnn (xla)" in table
  assert table.startswith(f"CPU: {report['cpu']['model']}") and "fused mixture: kernel" in table


def test_the_peer_case_times_pytorch_or_says_why_not(tmp_path):
  from actsearch.commands import bench, peer
  try:
    import torch  # noqa: F401
  except ImportError:
    info, calls = peer.steps()
    assert "not installed" in info["note"] and calls == {}
    return
  info, calls = peer.steps(compiled=False)  # torch.compile takes 10 s
  figures = bench._median_ms(calls, 1)
  assert figures["torch_eager_step_ms"] > 0 and info["torch_version"] == torch.__version__


def test_the_other_implementation_is_the_xla_code_unless_the_default_is():
  from actsearch.commands import bench
  from actsearch.space import implementation, kernels
  mixed = implementation.Plan(frozenset({("backward", "large")})).spec()
  assert bench.other_plan("kernel") == bench.other_plan(mixed) == "xla"
  assert bench.other_plan("xla") == ("kernel" if kernels.available() else None)
