"""One process of the loopback multi-controller test: runs `loop.run` on configs/tiny_multihost.py.

    python multiprocess_worker.py LOG_DIR STEPS OUT_NPZ
Environment: JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID for a multi-process run
(absent: a single process), XLA_FLAGS for the local fake CPU device count. Process 0 writes the final
policy parameters (gathered from all processes) to OUT_NPZ.
"""
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

from rlvr_jax.parallel.distributed import maybe_initialize  # noqa: E402

maybe_initialize()

import importlib.util  # noqa: E402

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from rlvr_jax.config import apply_variant, validate  # noqa: E402
from rlvr_jax.train import loop  # noqa: E402
from rlvr_jax.train.checkpoint import flat_leaves  # noqa: E402


def main(log_dir, steps, out):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location("tiny_multihost", os.path.join(root, "configs", "tiny_multihost.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.get_config()
    cfg.log.dir = log_dir
    cfg.train.steps = int(steps)
    cfg = validate(apply_variant(cfg))
    summary = loop.run(cfg)
    flat = flat_leaves(summary["state"].policy)
    full = {k: np.asarray(multihost_utils.process_allgather(v, tiled=True)) for k, v in flat.items()}
    if jax.process_index() == 0:
        np.savez(out, step=summary["steps"], **full)
    print(f"process {jax.process_index()}/{jax.process_count()} done: {summary['steps']} steps, "
          f"{jax.device_count()} devices", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
