"""Multi-process (multi-host) data parallelism: start-up and host-to-global batches.

With ``P`` processes, ``jax.devices()`` spans the devices of all of them, so the loop's
1-D ``data`` mesh (:func:`tljax.loop.data_mesh`) covers every accelerator of the job and
one jitted step runs data-parallel over all of them; XLA inserts the gradient all-reduce.
What changes with several processes is only the host side:

* every process must call :func:`maybe_initialize` (``jax.distributed.initialize``)
  before any JAX computation;
* every process draws the *same* seeded global batch (``DomainPairStream`` is a pure
  function of seed and position) and :func:`put_global` copies to its own devices only
  their rows of it, so each process feeds its share of the global batch and a run with
  ``P`` processes sees exactly the batches of a one-process run;
* only process 0 writes logs, TensorBoard events and ``results.json``; every process
  takes part in saving and restoring checkpoints (Orbax coordinates them; the workdir
  must be on a file system all hosts share).

Launch ``P`` copies of ``python -m experiments.run`` with ``--coordinator_address``,
``--num_processes`` and ``--process_id`` (or the environment variables below), or under
SLURM with ``srun`` and no flags at all (see docs/scaling.md).
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np

log = logging.getLogger("tljax")

#: Environment variables read when the arguments are not given (JAX itself reads the first
#: one; the other two follow its naming).
ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"${name}={raw!r} must be an integer.") from None


def _managed_cluster() -> str | None:
    """The cluster manager whose environment describes a multi-process job, if any."""
    if _env_int("SLURM_NTASKS") not in (None, 1) and "SLURM_JOB_ID" in os.environ:
        return "SLURM"
    if _env_int("OMPI_COMM_WORLD_SIZE") not in (None, 1):
        return "Open MPI"
    return None


def maybe_initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: list[int] | None = None,
    initialization_timeout: int = 300,
) -> bool:
    """Starts ``jax.distributed`` when this is one process of several; else does nothing.

    Arguments left as ``None`` are read from ``$JAX_COORDINATOR_ADDRESS``,
    ``$JAX_NUM_PROCESSES`` and ``$JAX_PROCESS_ID``. If none of the three is set anywhere
    and the process runs as one task of several under SLURM (``srun``, ``SLURM_NTASKS > 1``)
    or Open MPI, JAX's own cluster detection fills them in. Otherwise (or with
    ``num_processes=1``) this is a single-process run and nothing happens. Calling it again
    after a successful start is a no-op.

    Args:
      coordinator_address: ``host:port`` of process 0, reachable from every process.
      num_processes: number of processes of the job.
      process_id: this process's index in ``0 .. num_processes - 1``.
      local_device_ids: the local devices this process uses (default: JAX's choice, all
        local devices, or one GPU per task under SLURM).
      initialization_timeout: seconds to wait for all processes to connect.

    Returns:
      True if this is a multi-process run (``jax.process_count() > 1``).

    Raises:
      ValueError: if only some of the three settings are given, or they are inconsistent.
    """
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    coordinator_address = coordinator_address or os.environ.get(ENV_VARS[0]) or None
    if num_processes is None:
        num_processes = _env_int(ENV_VARS[1])
    if process_id is None:
        process_id = _env_int(ENV_VARS[2])
    given = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    if num_processes == 1:
        return False
    if all(v is None for v in given.values()):
        cluster = _managed_cluster()
        if cluster is None:
            return False
        log.info("Starting jax.distributed from the %s environment", cluster)
        jax.distributed.initialize(
            local_device_ids=local_device_ids, initialization_timeout=initialization_timeout
        )
    else:
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise ValueError(
                f"A multi-process run needs coordinator_address, num_processes and "
                f"process_id; {missing} missing (given: "
                f"{ {k: v for k, v in given.items() if v is not None} }). Pass them as "
                f"flags or set ${', $'.join(ENV_VARS)}."
            )
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ValueError(
                f"process_id={process_id} must be in 0..num_processes-1 and "
                f"num_processes={num_processes} >= 1."
            )
        log.info(
            "Starting jax.distributed: process %d of %d, coordinator %s",
            process_id,
            num_processes,
            coordinator_address,
        )
        jax.distributed.initialize(
            coordinator_address,
            num_processes,
            process_id,
            local_device_ids=local_device_ids,
            initialization_timeout=initialization_timeout,
        )
    log.info(
        "Process %d of %d: %d local of %d devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return jax.process_count() > 1


def initialize_from_env() -> bool:
    """:func:`maybe_initialize` from the environment only (``$JAX_*`` or SLURM/Open MPI)."""
    return maybe_initialize()


def is_main_process() -> bool:
    """True in the process that writes logs and results (process 0)."""
    return jax.process_index() == 0


def put_global(tree, sharding):
    """Places a host batch that every process holds in full on the global mesh.

    Each process copies only the rows its own devices hold under ``sharding``, so no data
    crosses hosts. The batch must be the same on every process (true for
    :class:`~tljax.data.stream.DomainPairStream` batches, a pure function of seed and
    position). With one process this is ``jax.device_put``. (``jax.device_put`` itself
    would also work with several processes, but it first checks with a cross-process
    all-gather that the inputs agree, which costs a full batch of traffic per step.)

    Args:
      tree: a pytree of NumPy arrays, the global batch.
      sharding: one sharding for all leaves (e.g. ``NamedSharding(mesh, P("data"))``).

    Returns:
      The pytree of global ``jax.Array``s.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            sharding, np.asarray(x), global_shape=np.shape(x)
        ),
        tree,
    )
