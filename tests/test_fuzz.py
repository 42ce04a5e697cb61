"""Readers under malformed input: each raises only the project's one-line ``UserError``, and
nothing read from a file is executed or unpickled beyond plain arrays.

Each reader has a table of named malformed cases (the suite's list of what it covers) and a
property-based test (hypothesis) over many generated ones: a bounded number in ``make test``,
more in ``make test-all`` (``HYPOTHESIS_PROFILE=long``).
"""

import copy
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actsearch import architecture, checks, cli, configs, data, results
from actsearch.errors import UserError

settings.register_profile("default", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.register_profile("long", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

CANDS = ["relu", "gelu"]
VALID_ARCH = {
    "schema": architecture.SCHEMA_V1, "candidates": CANDS, "relaxation": "softmax",
    "granularity": "layer",
    "layers": [{"name": "block0/act", "choice": "gelu", "weights": {"relu": 0.4, "gelu": 0.6},
                "params": {}, "scores": {"relu": 0.4, "gelu": 0.6}}],
    "model": {"name": "mlp", "widths": [4]}, "data": {"name": "mnist1d"}, "metrics": {},
    "seed": 0}
VALID_RESULT = {"seeds": [{"seed": 0, "test_loss": 0.5, "train_loss": 0.1, "wall_time_s": 1.0,
                           "param_count": 10, "test_accuracy": 0.9}],
                "wall_time_s": 1.0, "steps": 4, "description": "relu everywhere"}
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _with(base, path, value):
  out = copy.deepcopy(base)
  node = out
  for key in path[:-1]:
    node = node[key]
  if value is _DELETE:
    del node[path[-1]]
  else:
    node[path[-1]] = value
  return out


_DELETE = object()

# Schema v2: parameter arrays with their shapes, formulas, the strategy and its cost, user code.
VALID_V2 = {
    "schema": architecture.SCHEMA, "candidates": ["relu", "pau", "prelu"],
    "relaxation": "softmax", "granularity": "layer", "param_granularity": "layer",
    "layers": [
        {"name": "block0/act", "choice": "pau", "formula": "P(x) / Q(x)",
         "candidates": ["relu", "pau"], "weights": {"relu": 0.3, "pau": 0.7},
         "scores": {"pau": 0.7},
         "params": {"pau": {"num": {"shape": [6], "value": [0.0, 1.0, 0.5, 0.1, 0.0, 0.0]},
                            "den": {"shape": [4], "value": [0.1, 0.2, 0.0, 0.0]}}}},
        {"name": "block1/act", "choice": "prelu", "formula": "x if x >= 0 else a x",
         "params": {"prelu": {"slope": {"shape": [], "value": 0.3}}}}],
    "model": {"name": "mlp", "widths": [4, 4]}, "data": {"name": "mnist1d"}, "metrics": {},
    "seed": 0, "strategy": {"name": "darts", "cost": {"seconds": 1.5}},
    "code": ["experiments/mine.py"]}
_PAU = ["layers", 0, "params", "pau"]
V2_CASES = {
    "a parameter's value a string": _with(VALID_V2, [*_PAU, "num", "value"], "0.5"),
    "a number a string inside a parameter": _with(VALID_V2, [*_PAU, "num", "value", 2], "0.5"),
    "a parameter of the wrong shape": _with(VALID_V2, [*_PAU, "num", "shape"], [5]),
    "a ragged parameter": _with(VALID_V2, [*_PAU, "num", "value"], [[1.0], [1.0, 2.0]]),
    "a parameter without its shape": _with(VALID_V2, [*_PAU, "num", "shape"], _DELETE),
    "a parameter as a bare list (v1 form)": _with(VALID_V2, [*_PAU, "num"], [0.0] * 6),
    "a negative size": _with(VALID_V2, [*_PAU, "den", "shape"], [-4]),
    "an infinite parameter": _with(VALID_V2, ["layers", 1, "params", "prelu", "slope", "value"],
                                   float("inf")),
    "params of a candidate not chosen": _with(VALID_V2, ["layers", 1, "params", "pau"],
                                              {"num": {"shape": [], "value": 1.0}}),
    "duplicate slot names": _with(VALID_V2, ["layers", 1, "name"], "block0/act"),
    "choice outside the slot's candidates": _with(VALID_V2, ["layers", 0, "choice"], "prelu"),
    "slot candidates a string": _with(VALID_V2, ["layers", 0, "candidates"], "relu"),
    "formula a number": _with(VALID_V2, ["layers", 0, "formula"], 3),
    "strategy a name (v1 form)": _with(VALID_V2, ["strategy"], "darts"),
    "cost a string": _with(VALID_V2, ["strategy", "cost", "seconds"], "1.5"),
    "code not a list": _with(VALID_V2, ["code"], "experiments/mine.py"),
    "code holds a number": _with(VALID_V2, ["code"], [3]),
    "seed a bool": _with(VALID_V2, ["seed"], True),
    "metric a string": _with(VALID_V2, ["metrics"], {"val/loss": "low"}),
    "weights miss a slot candidate": _with(VALID_V2, ["layers", 0, "weights"], {"pau": 1.0}),
    # found by hypothesis: the message named the key and broke over two lines
    "a parameter named with a line break": _with(VALID_V2, ["layers", 0, "params"],
                                                 {"": {"\n": None}}),
}
ARCH_CASES = {
    "top level is a list": [],
    "top level is a string": "architecture",
    "wrong schema": _with(VALID_ARCH, ["schema"], "actsearch.architecture/v9"),
    "no candidates": _with(VALID_ARCH, ["candidates"], _DELETE),
    "empty candidates": _with(VALID_ARCH, ["candidates"], []),
    "candidate not a string": _with(VALID_ARCH, ["candidates"], ["relu", 3]),
    "empty layers": _with(VALID_ARCH, ["layers"], []),
    "layer not an object": _with(VALID_ARCH, ["layers"], ["block0/act"]),
    "layer without name": _with(VALID_ARCH, ["layers", 0, "name"], _DELETE),
    "choice not a candidate": _with(VALID_ARCH, ["layers", 0, "choice"], "tanh"),
    "choice a list": _with(VALID_ARCH, ["layers", 0, "choice"], ["gelu"]),
    "weights miss a candidate": _with(VALID_ARCH, ["layers", 0, "weights"], {"gelu": 1.0}),
    "weight a string": _with(VALID_ARCH, ["layers", 0, "weights", "gelu"], "0.6"),
    "weight a bool": _with(VALID_ARCH, ["layers", 0, "weights", "gelu"], True),
    "weight infinite": _with(VALID_ARCH, ["layers", 0, "weights", "gelu"], float("inf")),
    "params a list": _with(VALID_ARCH, ["layers", 0, "params"], []),
    "scores name a stranger": _with(VALID_ARCH, ["layers", 0, "scores"], {"tanh": 1.0}),
    "channel choices not candidates": _with(VALID_ARCH, ["layers", 0, "channel_choices"],
                                            ["sin"]),
    "seed a string": _with(VALID_ARCH, ["seed"], "0"),
    "model a list": _with(VALID_ARCH, ["model"], ["mlp"]),
    "retrain a string": _with(VALID_ARCH, ["retrain"], "adam"),
    "duplicate slot names": _with(VALID_ARCH, ["layers"], [VALID_ARCH["layers"][0]] * 2),
    **V2_CASES,
}
ARCH_TEXTS = {
    "truncated JSON": '{"schema": "actsearch.architecture/v1", "layers": [',
    "empty file": "",
    "not JSON": "schema: v1\n",
    "binary garbage": "\x00\xff\xfe garbage",
}


@pytest.mark.parametrize("case", list(ARCH_CASES))
def test_architecture_reader_refuses(case, tmp_path):
  path = tmp_path / "a.json"
  path.write_text(json.dumps(ARCH_CASES[case]))
  with pytest.raises(UserError) as e:
    architecture.load(str(path))
  assert "\n" not in str(e.value) and str(path) in str(e.value)


@pytest.mark.parametrize("case", list(ARCH_TEXTS))
def test_architecture_reader_refuses_text(case, tmp_path):
  path = tmp_path / "a.json"
  path.write_bytes(ARCH_TEXTS[case].encode("latin-1"))
  with pytest.raises(UserError):
    architecture.load(str(path))


def test_the_valid_record_of_the_tables_loads(tmp_path):
  path = tmp_path / "a.json"
  path.write_text(json.dumps(VALID_V2))
  assert architecture.load(str(path)) == VALID_V2  # v2 is the commands' form
  path.write_text(json.dumps(VALID_ARCH))
  v1 = architecture.load(str(path))  # v1 is read into it
  assert v1["strategy"] == {"name": "darts", "cost": {}} and v1["code"] == []
  assert v1["layers"][0]["choice"] == "gelu" and v1["layers"][0]["candidates"] == CANDS
  path.write_text(json.dumps(VALID_RESULT))
  assert results.read_result(str(path)) == VALID_RESULT


def _paths(tree, prefix=()):
  yield prefix
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _paths(v, (*prefix, k))
  elif isinstance(tree, list):
    for i, v in enumerate(tree):
      yield from _paths(v, (*prefix, i))


ARCH_PATHS = [p for p in _paths(VALID_ARCH) if p]
V2_PATHS = [p for p in _paths(VALID_V2) if p]
RESULT_PATHS = [p for p in _paths(VALID_RESULT) if p]


RESULT_CASES = {
    "top level is a list": [],
    "no seeds": _with(VALID_RESULT, ["seeds"], _DELETE),
    "seeds empty": _with(VALID_RESULT, ["seeds"], []),
    "seed row a number": _with(VALID_RESULT, ["seeds"], [3]),
    "seed not an integer": _with(VALID_RESULT, ["seeds", 0, "seed"], "0"),
    "test loss a string": _with(VALID_RESULT, ["seeds", 0, "test_loss"], "0.5"),
    "accuracy infinite": _with(VALID_RESULT, ["seeds", 0, "test_accuracy"], float("inf")),
    "train loss beyond float": _with(VALID_RESULT, ["seeds", 0, "train_loss"], 10 ** 400),
    "no wall time": _with(VALID_RESULT, ["wall_time_s"], _DELETE),
    "param count a float": _with(VALID_RESULT, ["seeds", 0, "param_count"], 10.5),
}


@pytest.mark.parametrize("case", list(RESULT_CASES))
def test_results_reader_refuses(case, tmp_path):
  path = tmp_path / "result.json"
  path.write_text(json.dumps(RESULT_CASES[case]))
  with pytest.raises(UserError, match="delete it to train that variant again"):
    results.read_result(str(path))


def test_an_integer_beyond_int64_is_a_finite_number_to_the_results_reader():
  # hypothesis found numpy's isfinite raising TypeError on it (the reader now uses Python's)
  results.validate_result(_with(VALID_RESULT, ["seeds", 0, "test_loss"], -2 ** 63 - 1), "r")


# Each JSON reader, fed its valid file with one value anywhere replaced by any JSON value:
# it accepts, or refuses in one line (never another exception).
FUZZED_READERS = {
    "architecture": (VALID_ARCH, ARCH_PATHS, lambda t: architecture.validate(t, "fuzz.json")),
    "architecture v2": (VALID_V2, V2_PATHS, lambda t: architecture.validate(t, "fuzz.json")),
    "results": (VALID_RESULT, RESULT_PATHS,
                lambda t: results.validate_result(t, "result.json")),
}


@pytest.mark.parametrize("reader", list(FUZZED_READERS))
@given(data=st.data())
def test_a_reader_under_fuzzing_accepts_or_refuses_in_one_line(reader, data):
  valid, paths, validate = FUZZED_READERS[reader]
  path, value = data.draw(st.sampled_from(paths)), data.draw(JSON)
  try:
    validate(_with(valid, list(path), value))
  except UserError as e:
    assert "\n" not in str(e)


def _npz(tmp_path, **arrays):
  path = tmp_path / "d.npz"
  np.savez(path, **arrays)
  return str(path)


_X, _Y = np.zeros((6, 3), np.float32), np.arange(6) % 2

NPZ_CASES = {
    "missing x_test": dict(x_train=_X, y_train=_Y, y_test=_Y),
    "object array (pickle)": dict(x_train=np.array([{"a": 1}] * 6, dtype=object), y_train=_Y,
                                  x_test=_X, y_test=_Y),
    "lengths disagree": dict(x_train=_X, y_train=_Y[:5], x_test=_X, y_test=_Y),
    "NaN in inputs": dict(x_train=np.full((6, 3), np.nan, np.float32), y_train=_Y,
                          x_test=_X, y_test=_Y),
    "negative class": dict(x_train=_X, y_train=_Y - 1, x_test=_X, y_test=_Y),
    "mixed label kinds": dict(x_train=_X, y_train=_Y, x_test=_X, y_test=_Y.astype(float)),
    "inputs one-dimensional": dict(x_train=np.zeros(6), y_train=_Y, x_test=_X, y_test=_Y),
    "x_val without y_val": dict(x_train=_X, y_train=_Y, x_test=_X, y_test=_Y, x_val=_X),
    "shapes disagree": dict(x_train=_X, y_train=_Y, x_test=np.zeros((6, 4)), y_test=_Y),
    "string inputs": dict(x_train=np.array(["a"] * 6), y_train=_Y, x_test=_X, y_test=_Y),
}


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_npz_reader_refuses(case, tmp_path):
  with pytest.raises(UserError):
    data.make_splits(data.load_npz(_npz(tmp_path, **NPZ_CASES[case])), 0.5, 0, "d.npz")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"\x93NUMPY not npz"])
def test_npz_reader_refuses_broken_files(content, tmp_path):
  path = tmp_path / "d.npz"
  path.write_bytes(content)
  with pytest.raises(UserError):
    data.load_npz(str(path))


def test_a_pickled_member_is_never_unpickled(tmp_path):
  import pickle

  class Boom:
    def __reduce__(self):
      return (os.system, ("touch " + str(tmp_path / "pwned"),))
  buf = io.BytesIO()
  np.save(buf, np.array([Boom()], dtype=object), allow_pickle=True)
  path = tmp_path / "evil.npz"
  with zipfile.ZipFile(path, "w") as z:
    for name in ("x_train", "y_train", "x_test", "y_test"):
      z.writestr(f"{name}.npy", buf.getvalue())
  with pytest.raises(UserError):
    data.load_npz(str(path))
  assert not (tmp_path / "pwned").exists()
  del pickle


ARRAYS = st.sampled_from([np.float32, np.int64, np.float64, np.uint8, np.bool_, np.complex64])


@given(shapes=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), min_size=4, max_size=6),
       dtypes=st.lists(ARRAYS, min_size=6, max_size=6), fill=st.floats(allow_nan=True))
def test_npz_reader_under_fuzzing(tmp_path, shapes, dtypes, fill):
  names = ["x_train", "y_train", "x_test", "y_test", "x_val", "y_val"]
  arrays = {}
  for name, shape, dtype in zip(names, shapes, dtypes):
    with np.errstate(all="ignore"):
      arrays[name] = np.full(shape if name.startswith("x") else shape[:1], fill).astype(dtype)
  try:
    data.make_splits(data.load_npz(_npz(tmp_path, **arrays)), 0.5, 0, "d.npz")
  except UserError as e:
    assert "\n" not in str(e)


# CIFAR's python-pickle files (data/cifar.py): named malformed cases, then mutated bytes.
def _cifar_batch(**changes):
  import cifar_files

  good = cifar_files.batch(4, 10, "labels", 0)
  for k, v in changes.items():
    if v is _DELETE:
      del good[k.encode()]
    else:
      good[k.encode()] = v
  return good


CIFAR_CASES = {
    "no labels": _cifar_batch(labels=_DELETE),
    "no data": _cifar_batch(data=_DELETE),
    "data as floats": _cifar_batch(data=np.zeros((4, 3072), np.float32)),
    "data of the wrong width": _cifar_batch(data=np.zeros((4, 3071), np.uint8)),
    "data one-dimensional": _cifar_batch(data=np.zeros(3072 * 4, np.uint8)),
    "data a list": _cifar_batch(data=[0] * 4),
    "fewer labels than images": _cifar_batch(labels=[0, 1, 2]),
    "a label beyond the classes": _cifar_batch(labels=[0, 1, 2, 10]),
    "a negative label": _cifar_batch(labels=[0, 1, 2, -1]),
    "labels as strings": _cifar_batch(labels=["0", "1", "2", "3"]),
    "labels as floats": _cifar_batch(labels=[0.0, 1.0, 2.0, 3.0]),
    "labels a dict": _cifar_batch(labels={0: 1}),
    "a structured array": _cifar_batch(data=np.zeros(4, [("a", np.uint8)])),
}
CIFAR_BYTES = {
    "an empty file": b"",
    "not a pickle": b"CIFAR-10 data, honestly",
    "a truncated pickle": pickle.dumps(_cifar_batch(), protocol=2)[:300],
    "a list, not a dict": pickle.dumps([1, 2, 3], protocol=2),
    "a global outside numpy": b"\x80\x02cbuiltins\nprint\nX\x02\x00\x00\x00hi\x85R.",
    "_codecs.encode to another codec": b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00hiX\x04\x00"
                                       b"\x00\x00zlib\x86R.",
    "numpy's dtype of objects": pickle.dumps({b"data": np.array([None, 1], dtype=object),
                                              b"labels": [0, 1]}, protocol=2),
}


def _cifar_dir(tmp_path, raw: bytes):
  import cifar_files

  cifar_files.write(tmp_path, per_file=4)
  (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(raw)
  return str(tmp_path)


@pytest.mark.parametrize("case", [*CIFAR_CASES, *CIFAR_BYTES])
def test_cifar_reader_refuses(case, tmp_path):
  raw = CIFAR_BYTES[case] if case in CIFAR_BYTES else pickle.dumps(CIFAR_CASES[case], protocol=2)
  with pytest.raises(UserError) as e:
    data.cifar.load("cifar10", _cifar_dir(tmp_path, raw))
  assert "\n" not in str(e.value) and "data_batch_2" in str(e.value)


@given(cut=st.integers(0, 400), flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                                               max_size=4))
def test_cifar_reader_under_fuzzing(tmp_path, cut, flips):
  raw = bytearray(pickle.dumps(_cifar_batch(), protocol=2))
  for at, value in flips:
    raw[at % len(raw)] = value
  raw = bytes(raw[:len(raw) - cut])
  try:
    out = data.cifar.load("cifar10", _cifar_dir(tmp_path, raw))
  except UserError as e:
    assert "\n" not in str(e)
  else:
    assert out["x_train"].dtype == np.uint8 and out["x_train"].shape[1:] == (32, 32, 3)


OVERRIDE_CASES = {
    "no equals sign": "search.epochs",
    "unknown key": "search.epoch=3",
    "empty key": "=3",
    "string for an integer": "search.epochs=three",
    "list for a string": "search.relaxation=[1]",
    "object for a float": 'optim.arch.lr={"a": 1}',
    "wrong list element": 'search.candidates=[1, 2]',
    "bool for an integer": "search.epochs=true",
}


@pytest.mark.parametrize("case", list(OVERRIDE_CASES))
def test_config_overrides_refuse(case):
  with pytest.raises(UserError):
    configs.apply_overrides(configs.base_config(), [OVERRIDE_CASES[case]])


@given(key=st.sampled_from(["search.epochs", "search.relaxation", "optim.arch.lr",
                            "search.candidates", "model.widths", "search.xi", "nope", ""]),
       text=st.text(max_size=20))
def test_config_overrides_under_fuzzing(key, text):
  cfg = configs.base_config()
  try:
    configs.apply_overrides(cfg, [f"{key}={text}"])
    checks.check(cfg)
  except UserError as e:
    assert "\n" not in str(e)


CLI_CASES = {
    "unknown command": ["frobnicate"],
    "search without --config": ["search", "--workdir", "x"],
    "--epochs not a number": ["search", "--config", "c.py", "--workdir", "x", "--epochs", "a"],
    "retrain --seeds 0": ["retrain", "a.json", "--seeds", "0"],
    "unknown flag": ["show", "a.json", "--colour"],
    "bench unknown case": ["bench", "--cases", "resnet"],
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_flags_refuse(case, capsys):
  assert cli.main(CLI_CASES[case]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("actsearch: error:")


TOKENS = st.sampled_from(["search", "retrain", "export", "show", "candidates", "bench",
                          "--config", "--workdir", "--epochs", "--seeds", "--set", "--cases",
                          "-1", "0", "x", "a=b", "--baselines", "--no-progress", "--repeats"])


@given(argv=st.lists(TOKENS, max_size=6))
def test_cli_parser_under_fuzzing(argv):
  try:
    cli._parser().parse_args(argv)
  except UserError as e:
    assert "\n" not in str(e)
  except SystemExit as e:  # --help and friends
    assert e.code == 0
