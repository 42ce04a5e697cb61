"""The facade's commands from Python: a config, a search, a retrain, a record.

Thin shells over the commands the CLI runs (``commands/``, imported when called, so that
``import actsearch`` stays light), and ``apply``, which fixes a user's model to a record. The
record's slots are built as ``retrain.variants`` builds the found network's, without its
check that the record's backbone is registered: ``apply`` is handed the model itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from actsearch import architecture
from actsearch.errors import UserError
from actsearch.models import network, registry, user


def config(experiment: str | None = None):
  """The base config (``ml_collections.ConfigDict``), or an experiment file's ``get_config()``.

  >>> import actsearch
  >>> c = actsearch.config()
  >>> c.search.relaxation, c.search.discretize
  ('gumbel', 'screen')
  """
  from actsearch import configs, usercode
  return configs.base_config() if experiment is None else usercode.load_config(experiment)


def register_strategy(name: str, strategy):
  """Registers ``strategy`` (an ``actsearch.Strategy``) as ``search.strategy = name``; its
  ``defaults`` (a dict) become the config namespace ``search.<name>`` of ``config()`` made
  after it, its ``budget`` its rule in ``actsearch compare``. Returns it.

  >>> import actsearch
  >>> def first(r: actsearch.Run) -> actsearch.Found:  # every slot takes the first candidate
  ...   ...
  >>> def spend(cfg, given: actsearch.Spend):  # compare's rule: tries by the budget
  ...   cfg.search.doc_first.tries = max(1, round(3 * given.scale))
  >>> mine = actsearch.register_strategy("doc_first", actsearch.Strategy(
  ...     run=first, defaults={"tries": 3}, budget=spend, doc="the first candidate"))
  >>> actsearch.config().search.doc_first.tries
  3
  >>> from actsearch.strategies import table
  >>> table.STRATEGIES.remove("doc_first")
  """
  from actsearch.strategies import table
  return table.register(name, strategy)


def search(cfg, workdir: str, *, data: str | Mapping | None = None,
           progress: bool = False) -> dict:
  """Runs a search with ``cfg`` in ``workdir`` (resuming a run there) and returns the record
  that ``workdir/architecture.json`` holds. ``data``: a ``.npz`` file (``--data``), or a dict
  of arrays (``x_train, y_train, x_test, y_test``, optionally ``x_val, y_val``), which the run
  saves as ``workdir/data.npz`` so that ``export`` and ``retrain`` find them in a fresh
  process. ``cfg.data.task`` states classification or regression (default: by label dtype).

  The examples of ``search``, ``retrain``, ``load`` and ``trained`` run in that order as one
  session (a tiny MNIST-1D search of one epoch, then a retrain of it; about 30 s on 2 cores):

  >>> import os, tempfile
  >>> import actsearch
  >>> cfg = actsearch.config()
  >>> cfg.data.num_samples, cfg.model.widths, cfg.search.epochs = 400, [8], 1
  >>> cfg.search.candidates, cfg.search.discretize = ["relu", "tanh"], "argmax"
  >>> workdir = tempfile.mkdtemp()
  >>> record = actsearch.search(cfg, workdir)
  >>> [layer["name"] for layer in record["layers"]], sorted(record["layers"][0]["weights"])
  (['block0/act'], ['relu', 'tanh'])
  """
  import os

  from actsearch import data as datasets
  from actsearch.commands import search as command
  if isinstance(data, Mapping):
    data = datasets.save_arrays(dict(data), os.path.join(workdir, "data.npz"))
  return command.run(cfg, workdir, data_path=data, progress=progress)


def retrain(record: str, workdir: str | None = None, *, seeds: int | None = None,
            epochs: int | None = None, baselines: Sequence[str] | None = None,
            sets: Sequence[str] = (), progress: bool = False,
            weights_out: str | None = None) -> dict:
  """Retrains the record at path ``record`` from scratch over seeds, beside the baselines;
  returns the report that ``workdir/results.json`` holds (default workdir: ``retrain`` beside
  the record). ``weights_out``: a directory that also receives every trained network,
  ``VARIANT/seed<s>`` (``trained`` reads them from the workdir).

  After ``search``'s example:

  >>> path = os.path.join(workdir, "architecture.json")
  >>> report = actsearch.retrain(path, seeds=2, epochs=1, baselines=["relu"])
  >>> list(report["variants"]), report["protocol"]["seeds"]
  (['found', 'relu'], [0, 1])
  >>> report["metric"], "verdict" in report
  ('test_accuracy', True)
  """
  from actsearch.commands import retrain as command
  return command.run(record, workdir, seeds=seeds, epochs=epochs, baselines=baselines,
                     sets=sets, progress=progress, weights_out=weights_out)


def load(path: str) -> dict[str, Any]:
  """An ``architecture.json`` record, checked (a malformed one is one ``UserError``).

  After ``search``'s example:

  >>> actsearch.load(path)["layers"] == record["layers"]
  True
  >>> actsearch.load(os.path.join(workdir, "config.json"))
  Traceback (most recent call last):
  ...
  actsearch.errors.UserError: ...
  """
  return architecture.load(path)


def apply(record: Mapping | str, model: nnx.Module, example: jax.Array | None = None,
          learned: bool = True) -> nnx.Module:
  """Fixes every marked place of ``model`` (the user's own module) to the record's choice,
  with its learned parameters (``learned`` False: the candidates' initial values).

  ``record``: an ``architecture.json`` path or a loaded record. The places are found by
  tracing ``model(example)``; without ``example``, on zeros of the record's input shape
  (``data.input_shape``, which every search records). The record's slots and the model's must
  be the same names (the trace runs in eval mode, with ``train=False`` where ``__call__``
  takes it). Returns ``model``, changed in place, in the mode it came in (its weights, batch
  statistics and mode are the user's; ``model.eval()`` for inference); applying again
  replaces the slots. The module's docstring (``actsearch``) has an example.
  """
  arch = architecture.load(record) if isinstance(record, str) else architecture.validate(record)
  if example is None:
    shape = (arch.get("data") or {}).get("input_shape")
    if shape is None:
      raise UserError("the record names no data.input_shape; pass example= (an input batch)")
    example = jnp.zeros((1, *shape), jnp.float32)
  places = user.find(model, example)
  ours, theirs = [p.name for p in places], [layer["name"] for layer in arch["layers"]]
  if set(ours) != set(theirs):
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    raise UserError("the record's slots do not match the model's: "
                    + "; ".join(([f"the model's {', '.join(missing)} not in the record"]
                                 if missing else [])
                                + ([f"the record's {', '.join(extra)} not in the model"]
                                   if extra else [])))
  return user.attach(model, places, registry.record_slots(arch, learned))


def trained(retrain_dir: str, variant: str = "found", seed: int = 0) -> nnx.Module:
  """Seed ``seed``'s network as the retrain in ``retrain_dir`` left it: the backbone (for a
  user's model, the user's own module, built by its registered factory) with the variant's
  activations (``found`` or a baseline's name) and its trained weights. The weights are
  ``retrain_dir/<variant>/weights/seed<seed>``, an orbax checkpoint of the module's NNX state
  (``actsearch.train.weights``), batch norm's running averages included. It is returned in
  eval mode (Flax's ``model.eval()``: batch norm uses its running averages, dropout is off);
  call ``model.train()`` to train it further.

  After ``retrain``'s example: seed 1's ReLU network, scored by a plain forward pass.

  >>> import numpy as np
  >>> from actsearch import data
  >>> net = actsearch.trained(os.path.join(workdir, "retrain"), "relu", seed=1)
  >>> test = data.load(cfg.data, 0)
  >>> accuracy = float(np.mean(np.argmax(net(test.x_test), -1) == test.y_test))
  >>> row = report["variants"]["relu"]["seeds"][1]
  >>> abs(accuracy - row["test_accuracy"]) < 1e-6
  True
  """
  import os

  from actsearch import configs
  from actsearch import results as reports
  from actsearch.commands import retrain as command
  from actsearch.train import weights
  results = reports.load(retrain_dir)
  if variant not in results.get("variants", {}):
    raise UserError(f"{retrain_dir} has no variant {variant!r} (it has "
                    f"{', '.join(results.get('variants', {}))})")
  if seed not in results["protocol"]["seeds"]:
    raise UserError(f"{retrain_dir} trained seeds {results['protocol']['seeds']}, not {seed}")
  arch = architecture.load(results["architecture"])
  cfg = configs.from_json(results["config"])
  slot = command.variants(arch, [] if variant == reports.FOUND else [variant],
                          where=results["architecture"])[variant]
  model = registry.build(cfg.model, arch["data"]["input_shape"], arch["data"]["num_outputs"],
                         slot, network.rngs(seed))
  net = weights.load_into(command.weights_path(os.path.join(retrain_dir, variant), seed),
                          command.unwrapped(model))
  return network.set_mode(net, train=False)
