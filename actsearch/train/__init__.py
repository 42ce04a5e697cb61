"""The engine every command shares: the one objective (``objective``), optimizers
(``optim``), the plain weight step (``step``), the trainer that trains a stack of networks
and scores them (``trainer``), evaluation (``evaluate``), how batches reach the devices
(``feed``), data parallelism (``parallel``, ``distributed``), non-finite steps (``health``),
the loop (``loop``: resume, stretches, checkpoints, events), and its shells over the outside
world: orbax checkpoints (``checkpoint``), TensorBoard events (``events``), the workdir lock
(``lock``), test hooks (``hooks``), whole-file writes (``files``), glibc's allocator
(``allocator``).

It knows nothing of how an architecture is searched (``strategies``) or of the commands.
"""
