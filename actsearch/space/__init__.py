"""What can be chosen: the candidate activations (``activations``: registry, formulas,
groups, ``register``; ``candidates/``: the built-in catalogue), the relaxations of alpha into
mixture weights (``relaxations``), the slots (``mixed``: ``MixedActivation``,
``FixedActivation``, ``ArchParam``) and the fast fused mixture (``fused``, with its C++ passes
for CPU in ``kernels/``).

Pure math over arrays and NNX modules: nothing here knows of training, data or commands.
"""

# The catalogue (``candidates/``) registers the built-in candidates; importing any module of
# this package runs this first.
from actsearch.space import candidates as _catalogue  # noqa: E402,F401
