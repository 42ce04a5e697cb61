"""actsearch search, export, show, candidates, known, retrain, reproduce, compare, yardstick,
bench.

Each command: flags, then one call.

Bad input is one line on stderr and exit code 2; anything else that fails is exit code 1.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback

from actsearch.errors import USER_CODE, UserError, WriteError
from actsearch.train import files

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, not argparse's usage block
    raise UserError(f"{self.prog}: {message}")


def _import_flag(p: argparse.ArgumentParser) -> None:
  p.add_argument("--import", dest="imports", action="append", default=[],
                 metavar="FILE_OR_MODULE", help="user code that registers candidates, "
                 "backbones, losses, datasets or strategies (a file or a module); repeatable")


def _imports(args) -> None:
  """Runs the user code named on the command line (and nothing a record names)."""
  if getattr(args, "imports", None):
    from actsearch import usercode
    for ref in args.imports:
      usercode.import_code(ref)


def _parser() -> argparse.ArgumentParser:
  p = _Parser(prog="actsearch", description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

  s = sub.add_parser("search", help="search activations; resumes when WORKDIR has a checkpoint")
  s.add_argument("--config", required=True, help="experiments/NAME.py")
  s.add_argument("--workdir", required=True, help="run directory, e.g. runs/NAME")
  s.add_argument("--epochs", type=int, help="stop after this epoch (default: search.epochs)")
  s.add_argument("--seed", type=int, help="overrides the config's seed")
  s.add_argument("--data", help="your own data: .npz with x_train, y_train, x_test, y_test")
  s.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                 help="override a config field; VALUE is JSON where it parses")
  s.add_argument("--no-progress", action="store_true", help="no progress bar")
  s.add_argument("--coordinator", metavar="HOST:PORT", help="multi-host: process 0's address")
  s.add_argument("--num-processes", type=int, help="multi-host: number of processes")
  s.add_argument("--process-id", type=int, help="multi-host: this process's index")
  s.add_argument("--distributed", action="store_true",
                 help="multi-host as the cluster describes it (SLURM, MPI, TPU pods)")
  _import_flag(s)

  e = sub.add_parser("export", help="discretize a run's newest checkpoint to JSON")
  e.add_argument("run_dir")
  _import_flag(e)
  e.add_argument("--out", help="default: RUN_DIR/architecture.json")

  sh = sub.add_parser("show", help="print an architecture.json as a table")
  sh.add_argument("file")

  c = sub.add_parser("candidates", help="the registered candidate activations, grouped: "
                     "fixed, parametric, learned")
  _import_flag(c)

  k = sub.add_parser("known", help="what a config can name (candidates, backbones, losses, "
                     "datasets, strategies) and where each comes from")
  k.add_argument("kinds", nargs="*", metavar="KIND", help="default: every kind")
  _import_flag(k)

  r = sub.add_parser("retrain", help="train an architecture and baselines from scratch over "
                     "seeds; compare on the test split")
  r.add_argument("file", help="architecture.json")
  r.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: retrain.seeds)")
  r.add_argument("--epochs", type=int, help="training epochs (default: retrain.epochs)")
  r.add_argument("--baselines", help="comma-separated candidates, each in every slot "
                 "(default: retrain.baselines)")
  r.add_argument("--workdir", help="default: retrain/ beside FILE")
  r.add_argument("--weights-out", metavar="DIR", help="also write each trained network there "
                 "(DIR/VARIANT/seed<s>: an orbax checkpoint of its NNX state)")
  r.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                 help="override a field of the retrain config (retrain.*, model.*, data.*)")
  r.add_argument("--no-progress", action="store_true", help="no progress bar")
  _import_flag(r)

  rp = sub.add_parser("reproduce", help="search, retrain and baselines for the headline tasks")
  rp.add_argument("--tasks", default="mnist1d_cnn,mnist1d_mlp,digits_mlp,digits_cnn2d,"
                  "digits_resnet",
                  help="comma-separated: mnist1d_cnn, mnist1d_mlp, digits_mlp, digits_cnn2d, "
                       "digits_resnet (the default), mnist1d_cnn_catalogue, mnist1d_cnn_default8, "
                       "or your own experiment files (PATH.py)")
  rp.add_argument("--workdir", default="runs/reproduce")
  rp.add_argument("--seeds", type=int, default=5, help="retrain seeds per variant")
  rp.add_argument("--no-progress", action="store_true", help="no progress bar")

  cm = sub.add_parser("compare", help="every search strategy at DARTS' budget and 5x it, "
                      "retrained over seeds: one table")
  cm.add_argument("--tasks", default="digits_mlp,mnist1d_cnn",
                  help="comma-separated: digits_mlp (3 search seeds), mnist1d_cnn (1)")
  cm.add_argument("--strategies", help="comma-separated (default: every strategy with a "
                  "budget rule, `actsearch known strategies`; darts always runs: its spend is "
                  "the budget)")
  cm.add_argument("--scales", default="1,5", help="comma-separated budgets, in units of "
                  "DARTS' default spend")
  cm.add_argument("--search-seeds", type=int, help="at most this many search seeds per task")
  cm.add_argument("--workdir", default="runs/compare")
  cm.add_argument("--seeds", type=int, default=5, help="retrain seeds per found network")
  cm.add_argument("--no-progress", action="store_true", help="no progress bar")

  y = sub.add_parser("yardstick", help="each candidate's network trained alone (the truth) and "
                     "how well each method's ranking matches it")
  y.add_argument("task", help="an experiment: mnist1d_cnn, ... or PATH.py")
  y.add_argument("--workdir", required=True)
  y.add_argument("--methods", default="", help="comma-separated methods to score against the "
                 "truth (actsearch/commands/yardstick.py: METHODS)")
  y.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                 help="override a field of the task's config")
  y.add_argument("--per-slot", action="store_true", help="also each slot's candidates with "
                 "the other slots at the truth's best")
  y.add_argument("--no-progress", action="store_true", help="no progress bar")

  b = sub.add_parser("bench", help="time and size the mixed activation and the search step")
  b.add_argument("--out", help="write the results as JSON")
  b.add_argument("--repeats", type=int, default=30, help="timed calls per measurement")
  b.add_argument("--cases", default="mlp,mnist1d_cnn,loop,retrain,peer",
                 help="comma-separated: mlp, mnist1d_cnn, loop, retrain, peer (PyTorch)")
  b.add_argument("--epochs", type=int, help="loop and retrain: epochs of the runs (default: "
                 "the experiment's)")
  b.add_argument("--rounds", type=int, default=5, help="loop and retrain: whole runs, each "
                 "measured between two measurements of the step alone (the figure: median)")
  b.add_argument("--no-fused", action="store_true", help="the plain sum, for comparison")
  return p


def _names(text: str) -> list[str]:
  """The names of a comma-separated flag, blanks dropped."""
  return [t.strip() for t in text.split(",") if t.strip()]


def _search(args) -> None:
  from actsearch.train import distributed

  distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                         auto=args.distributed)
  _imports(args)
  from actsearch import configs, usercode
  from actsearch.commands import search

  cfg = usercode.load_config(args.config)
  configs.apply_overrides(cfg, args.set)
  if args.seed is not None:
    cfg.seed = args.seed
  if args.data is not None and not os.path.isfile(args.data):
    raise UserError(f"data file not found: {args.data}")
  arch = search.run(cfg, args.workdir, stop_epoch=args.epochs, data_path=args.data,
                    progress=not args.no_progress)
  import jax

  if jax.process_index() == 0:
    from actsearch import architecture
    print(architecture.table(arch))
    print(f"wrote {os.path.join(args.workdir, 'architecture.json')}")


def _export(args) -> None:
  from actsearch import architecture
  from actsearch.commands import search

  arch = search.export(args.run_dir, args.out)
  print(architecture.table(arch))
  print(f"wrote {args.out or os.path.join(args.run_dir, 'architecture.json')}")


def _show(args) -> None:
  from actsearch import architecture

  print(architecture.table(architecture.load(args.file)))


def _candidates(args) -> None:
  from actsearch.space import candidates_table

  print(candidates_table.text())


def _known(args) -> None:
  from actsearch.commands import known

  print(known.text(args.kinds))


def _retrain(args) -> None:
  from actsearch.commands import retrain

  if args.seeds is not None and args.seeds < 1:
    raise UserError(f"--seeds must be a positive integer, got {args.seeds}")
  if args.epochs is not None and args.epochs < 1:
    raise UserError(f"--epochs must be a positive integer, got {args.epochs}")
  baselines = None
  if args.baselines is not None:
    baselines = _names(args.baselines)
  report = retrain.run(args.file, args.workdir, seeds=args.seeds, epochs=args.epochs,
                       baselines=baselines, sets=args.set, progress=not args.no_progress,
                       weights_out=args.weights_out)
  print(retrain.markdown(report))


def _reproduce(args) -> None:
  from actsearch.commands import reproduce

  if args.seeds < 1:
    raise UserError(f"--seeds must be a positive integer, got {args.seeds}")
  tasks = _names(args.tasks)
  out = reproduce.run(tasks, args.workdir, args.seeds, progress=not args.no_progress)
  print(reproduce.markdown(out))
  print(f"wrote {os.path.join(args.workdir, 'reproduce.md')}")


def _compare(args) -> None:
  from actsearch.commands import compare
  try:
    scales = [int(x) for x in _names(args.scales)]
  except ValueError:
    raise UserError(f"--scales takes comma-separated integers, got {args.scales!r}") from None
  try:
    out = compare.run(_names(args.tasks), args.workdir, args.seeds, scales,
                      _names(args.strategies) if args.strategies else None, args.search_seeds,
                      progress=not args.no_progress)
  except compare.CellFailed as e:
    print(f"actsearch: error: {e}", file=sys.stderr)
    raise SystemExit(EXIT_FAILURE) from None
  print(compare.markdown(out))
  print(f"wrote {os.path.join(args.workdir, 'compare.md')}")


def _yardstick(args) -> None:
  from actsearch.commands import yardstick

  out = yardstick.run(args.task, args.workdir, _names(args.methods), args.set,
                      per_slot=args.per_slot, progress=not args.no_progress)
  print(yardstick.markdown(out))
  print(f"wrote {os.path.join(args.workdir, 'yardstick.md')}")


def _bench(args) -> None:
  from actsearch.commands import bench

  cases = _names(args.cases)
  unknown = set(cases) - set(bench.CASES)
  if unknown or args.repeats < 1 or args.rounds < 1 or (args.epochs is not None
                                                          and args.epochs < 2):
    raise UserError(f"--cases takes {', '.join(bench.CASES)} (got {args.cases!r}); "
                    "--repeats >= 1; --rounds >= 1; --epochs >= 2")
  report = bench.run(cases, args.repeats, fused=not args.no_fused, epochs=args.epochs,
                     rounds=args.rounds)
  print(bench.header(report))
  print(bench.table(report["results"]))
  if args.out:
    files.write_json_atomic(args.out, report)
    print(f"wrote {args.out}")


COMMANDS = {"search": _search, "export": _export, "show": _show, "candidates": _candidates,
            "known": _known,
            "retrain": _retrain, "reproduce": _reproduce, "compare": _compare,
            "yardstick": _yardstick, "bench": _bench}


# Writes that fail for want of room or permission: one line, exit 1 (not a traceback).
_NO_ROOM = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)

# commands that run compiled steps
COMPILED = ("search", "retrain", "reproduce", "compare", "yardstick", "bench")


def _quiet_background_writers() -> None:
  """A failed checkpoint write is reported by ``Checkpointer`` in one line. orbax would also
  log it (with tracebacks) from its writer threads through absl; asyncio would log its tasks'
  unretrieved exception when they are collected (at exit, or whenever the collector runs);
  tensorstore's callbacks would raise into the closed event loops of those threads. All three
  are silenced here."""
  import logging

  for name in ("absl", "asyncio"):
    logging.getLogger(name).setLevel(logging.CRITICAL)
  default = sys.unraisablehook

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and "Event loop is closed" in str(unraisable.exc_value)):
      default(unraisable)
  sys.unraisablehook = hook


def main(argv: list[str] | None = None) -> int:
  try:
    args = _parser().parse_args(argv)
    if args.command in COMPILED:
      from actsearch.train import allocator
      allocator.fewer_copies()  # before JAX's backend starts, or it has no effect
      allocator.keep_freed_memory()
      _quiet_background_writers()
    if args.command != "search":  # search imports after jax.distributed starts
      _imports(args)
    COMMANDS[args.command](args)
  except UserError as e:
    print(f"actsearch: error: {e}", file=sys.stderr)
    return EXIT_BAD_INPUT
  except FloatingPointError as e:  # a diverged search: say where, keep the last checkpoint
    print(f"actsearch: error: {e}", file=sys.stderr)
    return EXIT_FAILURE
  except WriteError as e:  # disk full, file too large: the checkpoints before it are kept
    print(f"actsearch: error: {e}", file=sys.stderr)
    return EXIT_FAILURE
  except OSError as e:
    if e.errno not in _NO_ROOM:
      raise
    print(f"actsearch: error: cannot write {e.filename or 'a file'} ({e.strerror}); the newest "
          "checkpoint is kept", file=sys.stderr)
    return EXIT_FAILURE
  except KeyboardInterrupt:
    print("actsearch: interrupted; the newest checkpoint is kept", file=sys.stderr)
    return EXIT_FAILURE
  except Exception as e:
    where = getattr(e, USER_CODE, None)
    if where is None:
      raise
    traceback.print_exception(e)  # the user's bug: their traceback, then one line
    print(f"actsearch: error: {where} raised {type(e).__name__}: {e} (the traceback above is "
          "from your code)", file=sys.stderr)
    return EXIT_BAD_INPUT
  return EXIT_OK


if __name__ == "__main__":
  sys.exit(main())
