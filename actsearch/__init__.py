"""actsearch: differentiable (DARTS-style) search over activation functions, in JAX."""

from actsearch.version import __version__  # noqa: F401
