"""Configs: the shared defaults, ``--set`` overrides, and stored configs read back.

An experiment file (``experiments/NAME.py``, loaded by ``usercode.load_config``) defines
``get_config()`` returning an ``ml_collections.ConfigDict``; it usually starts from
``base_config()`` and changes what it needs. ``checks`` refuses values no run can use; a
command resolves a config once (``commands.workdirs.resolve``) into the copy it runs.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from collections.abc import Sequence

import ml_collections
from ml_collections import config_dict

from actsearch.errors import UserError
from actsearch.space import activations
from actsearch.strategies import table as strategies
from actsearch.train import trainer
from actsearch.usercode import load_config  # noqa: F401  (experiment files import it from here)

# The checkout the package runs from (a clone, or an editable install): its experiments/.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def experiment(name: str) -> str:
  """The path of ``experiments/NAME.py`` in the checkout."""
  return os.path.join(ROOT, "experiments", f"{name}.py")


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every search experiment (DARTS' optimizer settings)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # user code (experiment files, modules) that registered what this run names (candidates,
  # backbone, loss, dataset, strategy); filled in by the search, recorded in config.json and
  # architecture.json
  c.code = []

  c.data = ml_collections.ConfigDict()
  c.data.name = "mnist1d"          # mnist1d | digits | npz (data.path, --data) | cifar10 | cifar100
  c.data.dir = ""                  # cifar10 / cifar100: the folder of the python-pickle files
  c.data.augment = "crop_flip"     # cifar: crop_flip (pad 4, random crop, flip) | none
  c.data.path = ""                 # .npz file with x_train, y_train, x_test, y_test[, x_val, y_val]
  c.data.num_samples = 5000        # mnist1d: examples generated (80% train, 20% test)
  c.data.num_test = 0              # mnist1d: if > 0, num_samples train + num_test test examples
  c.data.task = "auto"             # auto (by label dtype) | classification | regression
  c.data.loss = "auto"             # auto (cross_entropy | squared_error by task), or your own
                                   # (actsearch.register_loss; train/losses.py)
  c.data.images = False            # digits: 8x8x1 images (height, width, channels)
  c.data.data_seed = 42            # the dataset generator's seed (fixed: same data every run)
  c.data.val_fraction = 0.5        # share of the training data held out as the search's val split
  c.data.resident_mb = 1024.0      # data up to this size stay on the devices (feed.py)

  c.model = ml_collections.ConfigDict()
  c.model.name = "mlp"             # mlp | cnn1d | cnn2d | resnet, or a model your code registers
  c.model.widths = [64, 64]        # hidden widths (mlp), channels (cnn1d, cnn2d); a slot each

  c.search = ml_collections.ConfigDict()
  c.search.strategy = "darts"      # how architectures are found (actsearch/strategies/table.py)
  c.search.epochs = 50             # length of the search; the lr schedule spans it
  c.search.warmup_epochs = 0       # epochs that train the weights only, alpha frozen
  c.search.batch_size = 64         # global batch, for the train and the val batch alike
  c.search.candidates = list(activations.DEFAULT)  # group "default"
  c.search.order = "first"         # first | second (exact) | second_fd (DARTS' approximation)
  c.search.xi = config_dict.placeholder(float)  # virtual step size; unset: the weight lr
  # softmax | gumbel | sigmoid | dirichlet; Gumbel samples rank candidates by what each does
  # alone part of the time (chosen on val: docs/choosing-defaults.md)
  c.search.relaxation = "gumbel"
  c.search.temperature = 1.0       # relaxation temperature T
  c.search.temperature_final = config_dict.placeholder(float)  # set: T anneals to it (GDAS)
  c.search.granularity = "layer"   # layer | channel
  # candidate parameters (PReLU's slope, PAU's coefficients) per layer | channel; unset: as
  # search.granularity
  c.search.param_granularity = config_dict.placeholder(str)
  # some slots' own candidates, by slot name: {"block1/act": ["relu", "nn_act"]}
  c.search.slot_candidates = ml_collections.ConfigDict()
  c.search.fused = True            # fused mixed-activation kernel where candidates allow it
  # which passes of the fused mixture take the C++ kernel on CPU: auto (measured once per
  # machine), kernel, xla, or per pass (space/implementation.py); a run records what it used
  c.search.implementation = "auto"
  c.search.normalize = False       # candidates scaled to zero mean, unit variance under N(0, 1)
  c.search.clamp = 0.0             # > 0: each slot's output clipped to [-clamp, clamp]
  c.search.shrink = False          # progressive shrinking: drop the weakest candidates per epoch
  c.search.shrink_until = 0.75     # shrink: share of the epochs after which one is left
  c.search.eval_batch_size = 1000  # batch for evaluating the supernet on the val split
  c.search.on_nonfinite = "stop"   # stop | skip: what a non-finite step does (health.py)
  c.search.max_skipped = 10        # skip: stop after this many non-finite steps in a row
  c.search.checkpoint_every = 0    # > 0: also a checkpoint every this many steps
  # true: orbax writes checkpoints in a background thread; unset (null): only where the step
  # runs on an accelerator (on a CPU a background save takes the cores the steps run on)
  c.search.async_checkpoints = config_dict.placeholder(bool)
  # Epochs between val evaluations of the supernet (and the last); every step logs the loss
  # of its own val batch (val_batch/*) in any case.
  c.search.eval_every = 5
  # argmax | perturbation | shortlist | screen (actsearch/strategies/discretize.py)
  c.search.discretize = "screen"   # chosen on val: the weights alone do not rank (the docs)
  c.search.shortlist_k = 2         # shortlist: candidates per slot (the largest weights; screen:
                                   # the best screened)
  c.search.shortlist_max = 16      # shortlist: at most this many networks
  c.search.shortlist_epochs = 10   # shortlist: epochs each network trains on the train split
  c.search.shortlist_seeds = 1     # shortlist: initialisations per network
  c.search.shortlist_reduce = "mean"  # mean | best: a network's score over its initialisations
  # true: the simplest network (fewest learned activation parameters) scoring within one
  # standard error of the best (over its initialisations) is chosen (discretize.choose)
  c.search.simplest_within_se = False
  # shortlist and screen: score each network on 1/4, 1/2 and all of the train split and rank by
  # its learning curve extrapolated to the retrain's size (train + val; strategies/curves.py)
  c.search.learning_curve = False
  # Black-box strategies (random, evolution, reinforce; strategies/blackbox.py): each network
  # trained and scored as a shortlisted one. Budget in training examples passed (a supernet
  # pass counted once per candidate it mixes); unset: what this config's DARTS search spends.
  c.search.budget = config_dict.placeholder(int)
  # each strategy's own keys, search.<name> (random, evolution, reinforce, correlation, race):
  # its defaults, stated in its module (strategies/)
  for name, keys in strategies.defaults().items():
    c.search[name] = ml_collections.ConfigDict(copy.deepcopy(keys))

  # The recipe that trains a fixed architecture from scratch (``actsearch retrain``): found
  # architecture and baselines alike, on train + val, scored on the test split.
  c.retrain = ml_collections.ConfigDict()
  # Chosen on the val split of MNIST-1D (CNN: ReLU 95.3%, GELU 95.8% trained on 4000
  # examples; docs/choosing-defaults.md, "The retrain recipe").
  c.retrain.optimizer = "adam"     # sgd | adam | adamw
  c.retrain.lr = 0.03
  c.retrain.lr_min = 0.0           # end of the cosine decay
  c.retrain.schedule = "warmup_cosine"  # warmup_cosine | cosine | step | constant
  c.retrain.warmup_fraction = 0.05  # warmup_cosine: share of the steps spent rising to lr
  c.retrain.momentum = 0.9         # sgd only
  c.retrain.weight_decay = 0.0
  c.retrain.act_weight_decay = 0.0  # decay of candidate activations' parameters (optim.py)
  c.retrain.act_lr_scale = 1.0     # their lr, as a multiple of retrain.lr
  c.retrain.norm_weight_decay = 0.0  # decay of batch norm's scale and bias (null: weight_decay)
  # where the found network's activation parameters start: initial (the candidates' initial
  # values, as the baselines' do: every variant trained from scratch) | searched (the record's)
  c.retrain.init_params = "initial"
  c.retrain.grad_clip = 5.0
  c.retrain.epochs = 40
  c.retrain.batch_size = 100
  c.retrain.eval_batch_size = 1000
  c.retrain.on_nonfinite = "stop"  # stop | skip, as search.on_nonfinite
  c.retrain.max_skipped = 10
  c.retrain.checkpoint_every = 0   # > 0: also a checkpoint every this many steps
  c.retrain.async_checkpoints = config_dict.placeholder(bool)  # as search.async_checkpoints
  c.retrain.seeds = 5              # seeds 0 .. seeds-1, the same for every variant (paired)
  c.retrain.baselines = ["relu", "gelu", "silu", "elu"]  # one candidate in every slot each

  c.optim = ml_collections.ConfigDict()
  c.optim.weights = ml_collections.ConfigDict()
  c.optim.weights.optimizer = "sgd"  # sgd (with momentum) | adam
  c.optim.weights.lr = 0.025       # cosine decay from lr to lr_min
  c.optim.weights.lr_min = 0.001
  c.optim.weights.momentum = 0.9
  c.optim.weights.weight_decay = 3e-4
  c.optim.weights.act_weight_decay = 0.0  # candidate activations' parameters: no decay
  c.optim.weights.act_lr_scale = 1.0  # their lr, as a multiple of optim.weights.lr
  c.optim.weights.norm_weight_decay = 0.0  # batch norm's scale and bias: no decay
  c.optim.weights.grad_clip = 5.0
  c.optim.arch = ml_collections.ConfigDict()
  c.optim.arch.lr = 3e-4           # Adam on alpha
  c.optim.arch.b1 = 0.5
  c.optim.arch.b2 = 0.999
  c.optim.arch.weight_decay = 1e-3
  return c


def leaf_keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every dotted key of ``cfg`` that holds a value (``search.race.epochs``), in order."""
  return [k for key, v in cfg.items() for k in (
      leaf_keys(v, f"{prefix}{key}.") if isinstance(v, ml_collections.ConfigDict)
      else [f"{prefix}{key}"])]


def _same_kind(old, new) -> bool:
  if isinstance(old, bool) or isinstance(new, bool):
    return isinstance(old, bool) and isinstance(new, bool)
  if isinstance(old, float):
    return isinstance(new, (int, float))
  if isinstance(old, (list, tuple)):
    return isinstance(new, list) and (not old or all(_same_kind(old[0], x) for x in new))
  return isinstance(new, type(old))


def apply_overrides(cfg: ml_collections.ConfigDict, sets: Sequence[str]) -> None:
  """Applies ``key.path=value`` overrides; VALUE is JSON where it parses, else a string."""
  for item in sets:
    if "=" not in item:
      raise UserError(f"--set expects key.path=value, got {item!r}")
    key, text = item.split("=", 1)
    key = key.strip()
    keys = [k for k in leaf_keys(cfg) if k != "code"]  # recorded by the run, not set
    if key not in keys:
      close = difflib.get_close_matches(key, keys, n=1)
      hint = f" (did you mean {close[0]}?)" if close else ""
      raise UserError(f"--set: unknown config key {key!r}{hint}; valid keys: {', '.join(keys)}")
    try:
      value = json.loads(text)
    except json.JSONDecodeError:
      value = text
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
      node = node[p]
    old = node[leaf]
    if old is None:  # a placeholder: ConfigDict itself checks the declared type
      try:
        node[leaf] = value
      except TypeError:
        raise UserError(f"--set {key}: wrong type for value {text!r}") from None
      continue
    if not _same_kind(old, value):
      raise UserError(f"--set {key}: expected {type(old).__name__} like {json.dumps(old)}, "
                      f"got {text!r}")
    if isinstance(old, float):
      value = float(value)
    node[leaf] = value


# Keys that say how a run goes, not what it computes: a run may resume with other values.
RUN_ONLY = ("code", "search.eval_every", "search.eval_batch_size", "search.checkpoint_every",
            "search.async_checkpoints", "data.resident_mb",
            *(f"retrain.{k}" for k in trainer.RUN_ONLY))


def from_json(stored: dict) -> ml_collections.ConfigDict:
  """A config from its JSON form, on top of ``base_config()``: keys added to the defaults
  since the JSON was written take their default values."""
  cfg = base_config()

  def merge(node: ml_collections.ConfigDict, values: dict) -> None:
    for k, v in values.items():
      if isinstance(v, dict) and isinstance(node.get(k), ml_collections.ConfigDict):
        merge(node[k], v)
      else:
        try:
          node[k] = ml_collections.ConfigDict(v) if isinstance(v, dict) else v
        except (TypeError, ValueError):
          raise UserError(f"config key {k!r}: value {v!r} has the wrong type") from None
  if not isinstance(stored, dict):
    raise UserError("a config must be a JSON object")
  merge(cfg, stored)
  return cfg


def to_json(cfg: ml_collections.ConfigDict) -> dict:
  return json.loads(cfg.to_json())


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
  """Dotted keys whose values differ between two nested dicts."""
  out = []
  for k in sorted(set(a) | set(b)):
    va, vb = a.get(k), b.get(k)
    if isinstance(va, dict) and isinstance(vb, dict):
      out += diff_keys(va, vb, f"{prefix}{k}.")
    elif va != vb:
      out.append(f"{prefix}{k}")
  return out


def lookup(tree: dict, dotted: str):
  """The value at dotted key ``dotted`` of a nested dict, ``KeyError`` (the class) if none."""
  for part in dotted.split("."):
    if not isinstance(tree, dict) or part not in tree:
      return KeyError
    tree = tree[part]
  return tree


# Keys whose default is resolved when a run starts, with the value that runs written before
# the key existed computed with: those runs took the CPU kernel wherever it could be built.
# Candidate activations' parameters were decayed like every weight (None: as weight_decay),
# and retrain started the found network from the record's parameters.
BEFORE_RECORDED = {"search.implementation": "kernel", "optim.weights.act_weight_decay": None,
                   "retrain.act_weight_decay": None, "retrain.init_params": "searched"}


def recorded(stored: dict, key: str):
  """The value of dotted ``key`` in a stored config: for a config written before the key
  existed, ``BEFORE_RECORDED``'s value, else None."""
  value = lookup(stored, key)
  return BEFORE_RECORDED.get(key) if value is KeyError else value


def new_default(stored: dict, resolved: dict, key: str) -> bool:
  """Whether dotted ``key`` is missing from ``stored`` (written before the key existed) and
  ``resolved`` holds the default value of it, or the value such runs computed with."""
  value = lookup(resolved, key)
  return (lookup(stored, key) is KeyError
          and (lookup(to_json(base_config()), key) == value
               or (key in BEFORE_RECORDED and BEFORE_RECORDED[key] == value)))
