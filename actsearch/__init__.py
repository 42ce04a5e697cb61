"""actsearch: differentiable (DARTS-style) search over activation functions, in JAX."""

__version__ = "0.1.0"
