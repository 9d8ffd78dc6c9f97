"""Page faults of repeated XLA:CPU calls with and without the host_alloc tunables (a diagnostic, not a test:
fault counts depend on the kernel, the load and what the machine did before).

    python benchmarks/host_alloc_faults.py [--mb 256] [--calls 3]

Runs one jitted function holding a barrier-kept temporary of --mb MB in two fresh processes (system
malloc, then `host_alloc.environ_with_tunables`) and prints the fewest minor faults of one call in each.
256 MB of fresh 4 KiB pages is about 62k faults; with the tunables the next call reuses the memory.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from rlvr_jax import host_alloc  # noqa: E402

PROBE = textwrap.dedent("""
    import resource, sys, time, jax, jax.numpy as jnp
    n, calls = int(sys.argv[1]) * 2**18, int(sys.argv[2])  # float32 elements of --mb MB
    f = jax.jit(lambda x: jnp.sum(jax.lax.optimization_barrier(jnp.sin(x)) * 2))
    x = jnp.ones(n)
    f(x).block_until_ready()
    faults = []
    for _ in range(calls):
        time.sleep(0.3)  # the previous call frees its temporary on a worker thread, just after it returns
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        f(x).block_until_ready()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(min(faults))
""")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--calls", type=int, default=3)
    a = ap.parse_args()
    if not host_alloc.supported():
        sys.exit("host_alloc_faults: needs Linux with glibc >= 2.26")
    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "RLVR_JAX_HOST_ALLOC_REEXEC")}
    base["JAX_PLATFORMS"] = "cpu"
    out = {}
    for name, env in (("system", base), ("keep", host_alloc.environ_with_tunables(base))):
        p = subprocess.run([sys.executable, "-c", PROBE, str(a.mb), str(a.calls)], env=env, capture_output=True,
                           text=True, timeout=600, cwd=ROOT)
        if p.returncode:
            sys.exit(f"host_alloc_faults: the {name} probe failed: {p.stderr.strip().splitlines()[-1]}")
        out[name] = int(p.stdout.split()[-1])
    print(json.dumps({"temporary_mb": a.mb, "min_faults_per_call": out}))


if __name__ == "__main__":
    main()
