"""How fast could any framework run the GRPO iteration benchmark on this CPU? Its matmul floor next to the
2x-the-best-peer target, and this CPU's matmul rate by row count: XLA, numpy's BLAS and rlvr_jax's packed
CPU kernel (`rlvr_jax.kernels.cpu_gemm`, what the sampler runs on a CPU).

Measures this machine's matmul rate on the shapes the benchmarks run (the 7 projections of a SmolLM2-135M
layer chained over 30 layers at M = 16 .. 2048 rows, and the 49152-way LM head), through XLA, numpy's
BLAS and the packed kernel (weights packed beforehand, as the sampler does once per call), keeps the
fastest for each M, and divides each benchmark's
analytic matmul FLOPs (`rlvr_jax.plan.accounting.forward_flops`) by it. Attention's memory traffic,
norms, sampling and the optimiser are left out, so no program built on these matmuls can beat the floor.
The target is half the best peer's time in benchmarks/results/iteration.json. (The sampler's floor is a
worker of benchmarks/sampler_bench.py, timed interleaved with the peers.)

    .venv/bin/python benchmarks/cpu_floor.py [--reps 5]     # writes benchmarks/results/cpu_floor.{md,json}
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from iteration_profile import phase_flops  # noqa: E402
from rlvr_jax.kernels import cpu_gemm  # noqa: E402
from rlvr_jax.plan.accounting import forward_flops  # noqa: E402
from sampler_weights import ours_config, projection_shapes  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "results")
MC = ours_config()  # SmolLM2-135M shapes
PROMPT, NEW = 32, 64  # the benchmarks' prompt bucket and new tokens


def layer_weights(rng):
    """[in, out] weights of the 7 projections of one layer, in the order a forward runs them."""
    return [rng.standard_normal(s, dtype=np.float32) * 0.02 for s in projection_shapes()]


def chain_flops(M: int, weights) -> float:
    return 2.0 * M * sum(w.size for w in weights) * MC.num_layers


def rates(M: int, reps: int, rng) -> dict:
    """GFLOP/s of the layer-projection chain and of the LM head at M rows: XLA, numpy, kernel (median of reps)."""
    w = layer_weights(rng)
    emb = rng.standard_normal((MC.vocab_size, MC.hidden_size), dtype=np.float32) * 0.02
    x = rng.standard_normal((M, MC.hidden_size), dtype=np.float32)
    wj, embj, xj = jax.device_put(w), jax.device_put(emb), jax.device_put(x)

    def chain(x, w, xp):
        for _ in range(MC.num_layers):
            q, k, v = x @ w[0], x @ w[1], x @ w[2]
            x = x + (q + xp.tile(k + v, (1, q.shape[1] // k.shape[1]))) @ w[3] * 0.01
            x = x + ((x @ w[4]) * (x @ w[5])) @ w[6] * 0.01
        return x

    xla_chain = jax.jit(lambda x, w: chain(x, w, jnp))
    xla_head = jax.jit(lambda x, e: x @ e.T)
    kernel_fns = {}
    if cpu_gemm.status()[0]:
        wp, headp = [cpu_gemm.pack(a) for a in wj], cpu_gemm.pack_transposed(embj)

        class Packed:  # `x @ Packed(w)` runs the packed kernel, so `chain` stays one definition
            def __init__(self, w):
                self.w = w

            def __rmatmul__(self, x):
                return cpu_gemm.packed_matmul(x, self.w)

        kernel_chain = jax.jit(lambda x, w: chain(x, [Packed(a) for a in w], jnp))
        kernel_head = jax.jit(cpu_gemm.packed_matmul)
        kernel_fns = {"kernel_chain": (lambda: kernel_chain(xj, wp), chain_flops(M, w)),
                      "kernel_head": (lambda: kernel_head(xj, headp), 2.0 * M * emb.size)}
    fns = {"xla_chain": (lambda: xla_chain(xj, wj), chain_flops(M, w)),
           "numpy_chain": (lambda: chain(x, w, np), chain_flops(M, w)),
           "xla_head": (lambda: xla_head(xj, embj), 2.0 * M * emb.size),
           "numpy_head": (lambda: x @ emb.T, 2.0 * M * emb.size), **kernel_fns}
    for fn, _ in fns.values():
        jax.block_until_ready(fn())  # compile / warm up
    times = {k: [] for k in fns}
    for _ in range(reps):  # interleaved, so drift hits every variant alike
        for k, (fn, _) in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            times[k].append(time.perf_counter() - t)
    return {k: fns[k][1] / statistics.median(v) / 1e9 for k, v in times.items()}


def best(r: dict, what: str) -> float:
    return max(r[f"xla_{what}"], r[f"numpy_{what}"], r.get(f"kernel_{what}", 0.0))


def sample_floor(prompts: int, rows: int, r: dict) -> float:
    """Seconds to prefill `prompts` prompts of 32 tokens and run 63 decode steps of `rows` rows."""
    pre = forward_flops(MC, prompts * PROMPT, PROMPT, 0) / best(r[prompts * PROMPT], "chain")
    pre += forward_flops(MC, 0, 0, prompts) / best(r[prompts], "head")
    dec = sum(forward_flops(MC, rows, PROMPT + t, 0) for t in range(NEW - 1)) / best(r[rows], "chain")
    dec += (NEW - 1) * forward_flops(MC, 0, 0, rows) / best(r[rows], "head")
    return (pre + dec) / 1e9


def update_floor(rate: float, prompts: int = 2, G: int = 8) -> float:
    """Seconds of one policy-gradient forward + backward (shared prompts), as iteration_profile.py counts it."""
    return phase_flops(MC, prompts, G, PROMPT, NEW)["grad"] / rate / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    with open(os.path.join(RESULTS, "iteration.json")) as f:
        iteration = json.load(f)["runs"][-1]
    rng = np.random.default_rng(0)
    Ms = [2, 16, 32, 64, 1024, 2048]  # decode rows and prompt rows (2 x 32), then training-sized products
    r = {}
    for M in Ms:
        r[M] = rates(M, args.reps, rng)
        print(f"M = {M:5d}: " + ", ".join(f"{k} {v:6.1f}" for k, v in r[M].items()) + " GFLOP/s", flush=True)
    big = max(best(r[M], "chain") for M in Ms)

    lines = ["### Matmul floors on this CPU against the 2x targets", "",
             f"Matmul rate (GFLOP/s) on the benchmarks' shapes through XLA, numpy's BLAS and rlvr_jax's packed CPU "
             f"kernel, median of {args.reps}, interleaved; load average "
             f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}:", "",
             "| rows M | XLA layers | numpy layers | kernel layers | XLA LM head | numpy LM head | kernel LM head |",
             "|---|---|---|---|---|---|---|"]
    for M in Ms:
        v = r[M]
        lines.append(f"| {M} | {v['xla_chain']:.1f} | {v['numpy_chain']:.1f} | {v.get('kernel_chain', 0):.1f} | "
                     f"{v['xla_head']:.1f} | {v['numpy_head']:.1f} | {v.get('kernel_head', 0):.1f} |")
    lines += ["", "| benchmark | best peer (recorded) | 2x target | matmul floor | floor / best peer "
              "| rlvr_jax (recorded) |", "|---|---|---|---|---|---|"]
    out = {"rates_gflops": {str(M): v for M, v in r.items()}, "rows": []}
    peers = {k: v["median_s"] for k, v in iteration["rows"].items() if k != "ours"}
    peer_s = min(peers.values())
    s_floor, u_floor = sample_floor(2, 16, r), update_floor(big)
    ours_s = iteration["rows"]["ours"]["median_s"]
    lines.append(f"| GRPO iteration | {peer_s:.1f} s | {peer_s / 2:.1f} s | {s_floor + u_floor:.1f} s (sample "
                 f"{s_floor:.1f} + update {u_floor:.1f}) | {peer_s / (s_floor + u_floor):.2f}x | {ours_s:.1f} s "
                 f"({peer_s / ours_s:.2f}x) |")
    out["rows"].append({"bench": "iteration", "peer_s": peer_s, "floor_s": s_floor + u_floor,
                        "floor_sample_s": s_floor, "floor_update_s": u_floor, "ours_s": ours_s})
    lines += ["", "The floor counts only matmul FLOPs at the best rate measured for their row count (the update "
              f"at {big:.1f} GFLOP/s, the fastest of all); attention's KV reads, norms, sampling and AdamW are "
              "extra. The peer and rlvr_jax times are the recorded ones (benchmarks/results/iteration.json, another "
              "run: this CPU drifts by 15% between runs). The sampler's floor is measured interleaved with the "
              "peers by benchmarks/sampler_bench.py (its matmul_floor worker).", "",
              "Command: `python benchmarks/cpu_floor.py" + (f" --reps {args.reps}" if args.reps != 5 else "") + "`"]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    with open(os.path.join(RESULTS, "cpu_floor.md"), "w") as f:
        f.write(text)
    with open(os.path.join(RESULTS, "cpu_floor.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
