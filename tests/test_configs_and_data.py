"""Config overrides and checks; data files, splits and batching."""

import os

import numpy as np
import pytest

from actsearch import checks, configs, data, usercode
from actsearch.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = ["mnist1d_cnn", "mnist1d_mlp", "digits_mlp", "mlp"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiments_load_check_and_document_their_command(name):
  path = os.path.join(ROOT, "experiments", f"{name}.py")
  cfg = usercode.load_config(path)
  checks.check(cfg)
  import importlib.util
  spec = importlib.util.spec_from_file_location("exp", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert "actsearch search" in module.__doc__ or "make search" in module.__doc__


@pytest.mark.parametrize("item, key, value", [
    ("model.widths=[64,64]", ("model", "widths"), [64, 64]),
    ("search.epochs=3", ("search", "epochs"), 3),
    ("search.order=second", ("search", "order"), "second"),
    ('search.candidates=["relu","sin"]', ("search", "candidates"), ["relu", "sin"]),
    ("optim.arch.lr=1", ("optim", "arch", "lr"), 1.0),
    ("search.xi=0.01", ("search", "xi"), 0.01),
    ("search.fused=false", ("search", "fused"), False),
])
def test_set_overrides_by_dotted_path_with_json_values(item, key, value):
  cfg = configs.base_config()
  configs.apply_overrides(cfg, [item])
  node = cfg
  for k in key:
    node = node[k]
  assert node == value and type(node) is type(value)


@pytest.mark.parametrize("item, message", [
    ("search.epoch=3",
     "unknown config key 'search.epoch' (did you mean search.epochs?); valid keys: data."),
    ("search.epochs=three", "search.epochs: expected int"),
    ("search.epochs=2.5", "search.epochs: expected int"),
    ("model.widths=64", "model.widths: expected list"),
    ('model.widths=["a"]', "model.widths: expected list"),
    ("search.fused=1", "search.fused: expected bool"),
    ("search.xi=fast", "search.xi: wrong type"),
    ("noequals", "expects key.path=value"),
])
def test_bad_overrides_are_user_errors_naming_the_problem(item, message):
  with pytest.raises(UserError) as e:
    configs.apply_overrides(configs.base_config(), [item])
  assert message in str(e.value)


@pytest.mark.parametrize("item, message", [
    ('search.candidates=["relu","nope"]', "unknown candidate activation 'nope'"),
    ("search.order=third", "search.order is 'third'"),
    ("search.relaxation=hardmax", "unknown relaxation 'hardmax'"),
    ("search.granularity=neuron", "search.granularity is 'neuron'"),
    ("search.batch_size=0", "search.batch_size must be a positive integer"),
    ("search.warmup_epochs=500", "search.warmup_epochs must be"),
    ("search.shortlist_reduce=median", "search.shortlist_reduce is 'median'; known: mean, best"),
])
def test_check_rejects_values_no_search_can_run_with(item, message):
  cfg = configs.base_config()
  configs.apply_overrides(cfg, [item])
  with pytest.raises(UserError, match=message):
    checks.check(cfg)


def _write(tmp_path, **arrays):
  path = tmp_path / "d.npz"
  np.savez(path, **arrays)
  return str(path)


def test_npz_classification_and_regression_are_told_by_label_dtype(tmp_path):
  x = np.random.default_rng(0).normal(size=(40, 3))
  cls = data.make_splits(data.load_npz(_write(
      tmp_path, x_train=x, y_train=np.arange(40) % 4, x_test=x[:5], y_test=np.arange(5) % 4)),
      0.5, 0, "d")
  assert cls.task == "classification" and cls.num_outputs == 4
  assert len(cls.x_train) == 20 and len(cls.x_val) == 20 and cls.y_val.dtype == np.int32
  reg = data.make_splits(data.load_npz(_write(
      tmp_path, x_train=x, y_train=x[:, 0], x_test=x[:5], y_test=x[:5, 0])), 0.5, 0, "d")
  assert reg.task == "regression" and reg.num_outputs == 1 and reg.y_train.shape == (20, 1)


def test_given_val_split_is_used_as_is_and_train_val_do_not_overlap(tmp_path):
  x = np.arange(60, dtype=np.float32).reshape(30, 2)
  y = np.arange(30) % 2
  s = data.make_splits(data.load_npz(_write(tmp_path, x_train=x[:20], y_train=y[:20],
                                            x_val=x[20:25], y_val=y[20:25],
                                            x_test=x[25:], y_test=y[25:])), 0.5, 0, "d")
  assert len(s.x_train) == 20 and len(s.x_val) == 5
  s2 = data.make_splits({"x_train": x, "y_train": y, "x_test": x[:2], "y_test": y[:2]},
                        0.5, 3, "d")
  train_rows = {tuple(r) for r in s2.x_train}
  assert not train_rows & {tuple(r) for r in s2.x_val}
  assert len(train_rows) + len(s2.x_val) == 30


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.zeros((4, 2))}, "lacks arrays y_train, x_test, y_test"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(3, int), "x_test": np.zeros((2, 2)),
      "y_test": np.zeros(2, int)}, "x_train has 4 examples but y_train has 3"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 3)),
      "y_test": np.zeros(2, int)}, "the x arrays disagree in shape"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 2)),
      "y_test": np.zeros(2)}, "labels must all be integers"),
    ({"x_train": np.full((4, 2), np.nan), "y_train": np.zeros(4, int),
      "x_test": np.zeros((2, 2)), "y_test": np.zeros(2, int)}, "NaN"),
])
def test_bad_npz_contents_are_user_errors(tmp_path, arrays, message):
  path = _write(tmp_path, **arrays)
  with pytest.raises(UserError, match=message):
    data.make_splits(data.load_npz(path), 0.5, 0, path)


def test_missing_and_malformed_npz_files_are_user_errors(tmp_path):
  with pytest.raises(UserError, match="data file not found"):
    data.load_npz(str(tmp_path / "none.npz"))
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"this is not a zip file")
  with pytest.raises(UserError, match="not a readable .npz"):
    data.load_npz(str(bad))


def test_epoch_order_is_a_function_of_seed_and_epoch():
  a = data.epoch_order(100, 16, seed=1, epoch=3)
  assert a.shape == (6, 16) and len(set(a.ravel())) == 96
  np.testing.assert_array_equal(a, data.epoch_order(100, 16, seed=1, epoch=3))
  assert not np.array_equal(a, data.epoch_order(100, 16, seed=1, epoch=4))


def test_mnist1d_is_generated_offline_without_touching_global_numpy_rng():
  np.random.seed(123)
  before = np.random.get_state()[1].copy()
  arrays = data.mnist1d(num_samples=200)
  assert arrays["x_train"].shape == (160, 40) and set(arrays["y_train"]) <= set(range(10))
  np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_mnist1d_with_a_test_size_keeps_the_training_size_and_adds_the_test_examples():
  arrays = data.mnist1d(num_samples=300, seed=3, num_test=500)
  assert len(arrays["x_train"]) == 300 and len(arrays["x_test"]) == 500
  assert arrays["x_train"].shape[1:] == arrays["x_test"].shape[1:] == (40,)
  assert set(np.unique(arrays["y_test"])) == set(range(10))
  default = data.mnist1d(num_samples=300, seed=3)
  assert len(default["x_train"]) == 240 and len(default["x_test"]) == 60


def test_mnist1d_is_generated_once_per_machine_and_a_damaged_cache_is_generated_again(
    tmp_path, monkeypatch):
  monkeypatch.setenv("ACTSEARCH_CACHE_DIR", str(tmp_path))
  calls = []
  real = data._cached

  def counting(kind, key, generate):
    return real(kind, key, lambda: calls.append(1) or generate())
  monkeypatch.setattr(data, "_cached", counting)
  data._mnist1d.cache_clear()  # as a new process: nothing held in memory
  first = data.mnist1d(num_samples=120, seed=5)
  cached = list(tmp_path.glob("mnist1d-*.npz"))
  assert calls == [1] and len(cached) == 1
  data._mnist1d.cache_clear()
  second = data.mnist1d(num_samples=120, seed=5)  # read back, not generated
  assert calls == [1]
  for k in first:
    np.testing.assert_array_equal(first[k], second[k])
    assert first[k].dtype == second[k].dtype
  data._mnist1d.cache_clear()
  data.mnist1d(num_samples=121, seed=5)  # other arguments: another file
  assert calls == [1, 1] and len(list(tmp_path.glob("mnist1d-*.npz"))) == 2
  cached[0].write_bytes(b"PK\x03\x04 not a zip file")  # damaged
  data._mnist1d.cache_clear()
  again = data.mnist1d(num_samples=120, seed=5)
  assert calls == [1, 1, 1]
  np.testing.assert_array_equal(again["x_train"], first["x_train"])
  data._mnist1d.cache_clear()
