"""actsearch: differentiable (DARTS-style) search over activation functions, in JAX.

The public API, for your own Flax NNX model (``experiments/own_model.py`` runs it end to end):

* ``slot(self, name, default)``: marks one activation of your model's ``__call__``;
* ``register_model(name)``: makes your model (or a factory) a backbone the commands build;
* ``config()``, ``search(cfg, workdir)``, ``retrain(record, ...)``, ``load(path)``;
* ``apply(record, model)``: fixes every slot of your model to the record's choice;
* ``trained(retrain_dir, variant, seed)``: a retrained seed's network with its weights;
* ``register_candidate(...)``: a candidate activation of your own;
* ``register_loss(name)``: a per-example loss of your own (``data.loss``);
* ``register_dataset(name)``: a dataset of your own, ``fn(data_cfg) -> arrays`` (``data.name``);
* ``register_strategy(name, Strategy(...))``: a search strategy of your own
  (``search.strategy``; its ``defaults`` become ``search.<name>``);
* ``UserError``: what bad input raises (the CLI's exit code 2).

Importing actsearch starts no JAX backend and changes no environment variable.

>>> import jax.numpy as jnp
>>> from flax import nnx
>>> import actsearch
>>> class Net(nnx.Module):
...   def __init__(self, *, rngs):
...     self.hidden, self.out = nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)
...   def __call__(self, x):
...     return self.out(actsearch.slot(self, "act", nnx.relu)(self.hidden(x)))
>>> net = Net(rngs=nnx.Rngs(0))
>>> x = jnp.ones((5, 3))
>>> bool(jnp.all(net(x) == net.out(nnx.relu(net.hidden(x)))))  # outside a search: relu
True
>>> record = {"schema": "actsearch.architecture/v2", "candidates": ["tanh"], "seed": 0,
...           "relaxation": None, "granularity": None, "model": {}, "data": {}, "metrics": {},
...           "layers": [{"name": "act", "choice": "tanh"}]}
>>> net = actsearch.apply(record, net, example=x)
>>> bool(jnp.allclose(net(x), net.out(jnp.tanh(net.hidden(x)))))
True

A candidate of your own, by name in ``search.candidates`` (bad input is one ``UserError``):

>>> softsign = actsearch.register_candidate("my_softsign", lambda x: x / (1 + jnp.abs(x)),
...                                         "x / (1 + |x|)", overwrite=True)
>>> try:
...   actsearch.register_candidate("My Softsign", jnp.tanh, "tanh(x)")
... except actsearch.UserError as e:
...   print("bad input:", e)
bad input: ...
"""

from actsearch.api import apply, config, load, register_strategy, retrain, search, trained
from actsearch.data.datasets import register as register_dataset
from actsearch.errors import UserError
from actsearch.models.user import register_model, slot
from actsearch.space.activations import register as register_candidate
from actsearch.strategies.base import Found, Run, Spend, Strategy
from actsearch.train.losses import register as register_loss
from actsearch.version import __version__

__all__ = ["Found", "Run", "Spend", "Strategy", "UserError", "__version__", "apply", "config",
           "load", "register_candidate", "register_dataset", "register_loss", "register_model",
           "register_strategy", "retrain", "search", "slot", "trained"]
