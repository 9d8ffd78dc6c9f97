"""Multi-controller start-up: `jax.distributed.initialize()` when launched as one of several processes.

The same program runs on every host of a TPU pod (or every process of a multi-GPU / CPU job); each
process drives its local devices and the mesh spans all of them. Call `maybe_initialize()` first
thing, before any JAX computation. It initialises when:
  * explicit: JAX_COORDINATOR_ADDRESS (host:port) with JAX_NUM_PROCESSES > 1 and JAX_PROCESS_ID
    (what launch/gpu.sh and the loopback test set), or RLVR_DISTRIBUTED=1 (let JAX detect);
  * a Cloud TPU pod slice: TPU_WORKER_HOSTNAMES lists more than one host (JAX auto-detects the rest);
  * SLURM / Open MPI with more than one task.
Only process 0 writes files (`is_main()`); orbax coordinates checkpoint writes itself.
"""
from __future__ import annotations

import os

import jax

_ENV_EXPLICIT = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def launch_kind(env=None) -> str | None:
    """'explicit', 'tpu_pod', 'slurm', 'mpi', 'forced' or None (single process) from the environment."""
    env = os.environ if env is None else env
    if env.get("RLVR_DISTRIBUTED", "") in ("0", "false", "False"):
        return None
    if env.get("JAX_COORDINATOR_ADDRESS") and int(env.get("JAX_NUM_PROCESSES", "1")) > 1:
        return "explicit"
    if env.get("RLVR_DISTRIBUTED", "") in ("1", "true", "True"):
        return "forced"
    hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
    if len(hosts) > 1:
        return "tpu_pod"
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in env:
        return "slurm"
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
        return "mpi"
    return None


def maybe_initialize(cfg=None, env=None) -> bool:
    """Initialises the multi-controller runtime when the environment says this is one of several
    processes; returns True when running multi-process. Idempotent. `cfg` is accepted for symmetry with
    the other entry points (nothing in it is needed: the launcher sets the environment)."""
    del cfg
    env = os.environ if env is None else env
    if jax.distributed.is_initialized():
        return True
    kind = launch_kind(env)
    if kind is None:
        return False
    if kind == "explicit":
        missing = [k for k in _ENV_EXPLICIT if k not in env]
        if missing:
            raise ValueError(f"distributed launch: {', '.join(missing)} not set "
                             f"(need all of {', '.join(_ENV_EXPLICIT)})")
        kw = dict(coordinator_address=env["JAX_COORDINATOR_ADDRESS"], num_processes=int(env["JAX_NUM_PROCESSES"]),
                  process_id=int(env["JAX_PROCESS_ID"]))
        if env.get("JAX_LOCAL_DEVICE_IDS"):
            kw["local_device_ids"] = [int(x) for x in env["JAX_LOCAL_DEVICE_IDS"].split(",")]
        jax.distributed.initialize(**kw)
    else:
        jax.distributed.initialize()
    return True


def is_main() -> bool:
    """True on the process that writes logs, summaries and exports (process 0)."""
    return jax.process_index() == 0


def preflight(mesh) -> str:
    """One line: processes, local/global devices, mesh shape, memory per device."""
    from rlvr_jax.parallel.mesh import describe
    return describe(mesh)


def host_to_global(x, mesh, spec=None):
    """A global jax.Array from a value every process holds in full (same on all), placed per `spec`
    (replicated by default); each process contributes only its addressable shards."""
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    sharding = NamedSharding(mesh, spec if spec is not None else P())

    def one(a):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])
    return jax.tree.map(one, x)
