"""Multi-host start-up on JAX's own runtime (``jax.distributed``).

Call ``initialize`` before anything else touches JAX's devices. Every process then runs
the same search; each loads its own slice of each global batch, and ``pmap``'s collectives
span the devices of all processes. Only process 0 writes logs, checkpoints and the
architecture.
"""

from __future__ import annotations

from actsearch.errors import UserError


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None,
               auto: bool = False) -> None:
  """Joins a multi-process run given explicitly, or as the cluster describes it (``auto``)."""
  explicit = (coordinator, num_processes, process_id)
  if not auto and all(v is None for v in explicit):
    return
  if not auto and any(v is None for v in explicit):
    raise UserError("--coordinator, --num-processes and --process-id go together")
  if coordinator is not None and (":" not in coordinator
                                  or not coordinator.rsplit(":", 1)[1].isdigit()):
    raise UserError(f"--coordinator must be HOST:PORT, got {coordinator!r}")
  if num_processes is not None and not 0 <= (process_id or 0) < num_processes:
    raise UserError(f"--process-id must lie in [0, {num_processes}), got {process_id}")
  import jax

  # CPU devices of different processes talk through gloo; GPUs and TPUs bring their own.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if auto and all(v is None for v in explicit):
    jax.distributed.initialize()  # SLURM, Open MPI, TPU pods, ... detected by JAX
  else:
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
