"""What can be chosen: the candidate activations (``activations``: registry, formulas,
``register``), the relaxations of alpha into mixture weights (``relaxations``), the slots
(``mixed``: ``MixedActivation``, ``FixedActivation``, ``ArchParam``) and the fast fused
mixture (``fused``, with its C++ passes for CPU in ``kernels/``).

Pure math over arrays and NNX modules: nothing here knows of training, data or commands.
"""
