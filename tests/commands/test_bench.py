"""`actsearch bench` runs and writes every figure the issue asks for (no timing asserted)."""

import json

from actsearch import cli

KEYS = {"fixed_fwd_bwd_ms", "mixed_fwd_bwd_ms", "fixed_train_step_ms", "search_step_first_ms",
        "search_step_second_ms", "compile_s", "fixed_step_temp_mb", "search_step_temp_mb",
        "mixed_over_fixed_fwd_bwd", "second_over_first_step", "search_over_fixed_temp_mb"}


def test_bench_writes_all_figures_and_a_table(tmp_path, capsys):
  out = tmp_path / "bench.json"
  assert cli.main(["bench", "--cases", "mnist1d_cnn", "--repeats", "2", "--out", str(out)]) == 0
  report = json.loads(out.read_text())
  figures = report["results"]["mnist1d_cnn"]
  assert KEYS <= set(figures)
  assert all(v > 0 for v in figures.values())
  assert figures["mixed_over_fixed_fwd_bwd"] == figures["mixed_fwd_bwd_ms"] / figures[
      "fixed_fwd_bwd_ms"]
  table = capsys.readouterr().out
  assert "| search_step_second_ms" in table and "mnist1d_cnn" in table


def test_bench_rejects_unknown_cases(capsys):
  assert cli.main(["bench", "--cases", "resnet"]) == 2
  assert "--cases" in capsys.readouterr().err
