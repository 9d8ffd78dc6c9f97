"""TPU program size of unrolled layers against a scanned stack: one Qwen3 decoder block (remat, forward +
backward) compiled through libtpu for an abstract v5e chip, the layers unrolled in Python (as
`models.Transformer` runs them) or in one `lax.scan` over stacked weights. Prints the generated code, the
temporaries and the compile seconds per depth: unrolled code grows with the depth, scanned code does not.

    python benchmarks/tpu_layer_code.py [--preset qwen3-0.6b] [--tokens 1536] [--rows 8] [--depths 2,4]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from rlvr_jax.models import layers  # noqa: E402
from rlvr_jax.models.config import preset  # noqa: E402
from rlvr_jax.plan.topologies import topology_devices  # noqa: E402


def compile_stack(cfg, rows: int, tokens: int, depth: int, scanned: bool, sharding) -> dict:
    """Compiler numbers of grad(sum(stack(x)^2)) for `depth` blocks, unrolled or scanned."""
    gdef, block = nnx.split(nnx.eval_shape(lambda: layers.Block(cfg, rngs=nnx.Rngs(0))))
    inv = layers.rope_inv_freq(cfg)

    def loss(stacked, x_BxTxD, pos_BxT, mask_BxTxT):
        def one(x, st):
            return jax.checkpoint(lambda s, h: nnx.merge(gdef, s)(h, pos_BxT, mask_BxTxT, inv)[0])(st, x), None
        if scanned:
            x_BxTxD, _ = jax.lax.scan(one, x_BxTxD, stacked)
        else:
            for i in range(depth):
                x_BxTxD, _ = one(x_BxTxD, jax.tree.map(lambda a: a[i], stacked))
        return jnp.sum(x_BxTxD.astype(jnp.float32) ** 2)

    def spec(shape, dtype):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
    args = (jax.tree.map(lambda v: spec((depth,) + v.shape, v.dtype), block),
            spec((rows, tokens, cfg.hidden_size), jnp.bfloat16), spec((rows, tokens), jnp.int32),
            spec((rows, tokens, tokens), jnp.bool_))
    t = time.time()
    mem = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(*args).compile().memory_analysis()
    return {"code": mem.generated_code_size_in_bytes, "temp": mem.temp_size_in_bytes, "seconds": time.time() - t}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="qwen3-0.6b")
    ap.add_argument("--tokens", type=int, default=1536)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--depths", default="2,4")
    a = ap.parse_args()
    devices, _, _ = topology_devices("v5e-1")
    sharding = NamedSharding(Mesh(np.array(devices[:1]), ("x",)), P())
    cfg = preset(a.preset).replace(dtype="bfloat16", param_dtype="bfloat16", num_layers=1)
    for scanned in (False, True):
        for depth in (int(d) for d in a.depths.split(",")):
            r = compile_stack(cfg, a.rows, a.tokens, depth, scanned, sharding)
            print(f"{'scanned' if scanned else 'unrolled':<9} {depth} layers: code {r['code'] / 1e6:7.1f} MB, "
                  f"temp {r['temp'] / 2**30:5.2f} GiB, compiled in {r['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
