"""Benchmark worker: the matmul floor of one sampler call, timed like a framework (main venv, numpy only).

For a request of B rows it runs only the matrix products a decoder must do: the prefill of B prompts of
32 tokens through the 7 projections of all 30 layers (M = 32 B rows) and the LM head for their last
tokens, then 63 decode steps of the same at M = B, with numpy's BLAS (on this CPU faster than XLA's dot
below a few hundred rows: `benchmarks/cpu_floor.py`). No attention, norms or sampling, so no framework
built on this BLAS can beat it; interleaved with the peers, it shows what a BLAS-based decoder could
reach. (rlvr_jax's own packed CPU kernels, `rlvr_jax/kernels`, are faster than this BLAS at these rows.)
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sampler_weights import SMOLLM2_135M, projection_shapes  # noqa: E402
from sampler_worker_common import NEW_TOKENS, PROMPT_BUCKET, serve  # noqa: E402


def main():
    s = SMOLLM2_135M
    d = s["hidden_size"]
    rng = np.random.default_rng(0)
    layers = [[rng.standard_normal(sh, dtype=np.float32) * 0.02 for sh in projection_shapes(s)]
              for _ in range(s["num_hidden_layers"])]
    emb_T = np.ascontiguousarray(rng.standard_normal((s["vocab_size"], d), dtype=np.float32).T * 0.02)

    def forward(x, head_rows):
        for wq, wk, wv, wo, wg, wu, wd in layers:
            x @ wk, x @ wv  # the K/V projections (their values feed attention, left out here)
            x = x + (x @ wq) @ wo
            x = x + ((x @ wg) * (x @ wu)) @ wd
        return x[-head_rows:] @ emb_T

    def run(batch, variant):
        x = rng.standard_normal((batch * PROMPT_BUCKET, d), dtype=np.float32) * 0.02
        forward(x, batch)
        x = x[:batch]
        for _ in range(NEW_TOKENS - 1):
            forward(x, batch)

    serve(run, {"framework": "matmul floor (numpy BLAS, matmuls only)", "numpy": np.__version__})


if __name__ == "__main__":
    main()
