"""How architectures are found: one module per strategy behind one table (``table``:
``search.strategy`` names an entry; ``darts`` is DARTS' bilevel search with its stabilisers),
the bilevel step and its hypergradients (``bilevel``), discretization methods
(``discretize``: supernet or scores -> one choice per slot) and what they measure
(``selection``: removal losses, shortlisted networks trained by the shared trainer,
progressive shrinking).
"""
