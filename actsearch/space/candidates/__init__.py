"""The built-in candidates, one module per kind: ``fixed`` functions of the field,
``parametric`` formulas with a few learned parameters, ``learned`` shapes (rational functions,
pieces, a small network). Importing this package registers them all (``space.activations``
imports it).
"""

from actsearch.space.candidates import fixed, parametric, learned  # noqa: F401,I001  registers
