"""DARTS (Liu et al. 2019) over activations (``search.strategy = darts``, the default): the
supernet whose slots mix every candidate (``supernet``), its weights on the train split and
alpha on the val split trained by the bilevel step (``bilevel``: first order, exact second
order, DARTS' finite difference), then one choice per slot by a discretization method
(``discretize``). Its stabilisers are the supernet's (``supernet``'s docstring)."""

from actsearch.strategies import supernet
from actsearch.strategies.base import Strategy

STRATEGY = Strategy(setup=supernet.setup, run=supernet.run, check=supernet.check,
                    export=supernet.export, budget=supernet.budget,
                    doc="DARTS: a supernet of mixed slots, bilevel steps, discretization")
