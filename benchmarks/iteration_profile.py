"""Where the time of one rlvr_jax GRPO iteration goes (the benchmark's shapes): each phase timed on its
own, interleaved over repetitions, next to its analytic FLOPs and a plain-matmul GFLOP/s reference
measured in the same process (so a loaded CPU shows up as a low reference, not as a slow phase).

Phases: sample (the `Sampler` call: prefill + 63 decode steps), host (decode text + verify + advantages +
batch), fwd (logprobs forward on the train batch), grad (value_and_grad of the policy loss), step (the
full jitted train step: grad + AdamW + skip-on-nonfinite), and the grad with one full forward per row
(`algo.share_prompt = False`: what sharing each group's prompt saves).

    .venv/bin/python benchmarks/iteration_profile.py [--reps 3] [--shape smollm2-135m]

It runs as `rlvr-train` would: it restarts itself once with the host-allocator tunables
(`train.host_allocator`, rlvr_jax/host_alloc.py).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import iteration_common as C  # noqa: E402
from iteration_worker_ours import bench_config  # noqa: E402
from rlvr_jax import host_alloc, parallel  # noqa: E402
from rlvr_jax.algos.advantages import compute_advantages  # noqa: E402
from rlvr_jax.models.scoring import response_logprobs_and_entropy  # noqa: E402
from rlvr_jax.models import from_pretrained  # noqa: E402
from rlvr_jax.models.tokenizer import load_tokenizer, tokenize_prompts  # noqa: E402
from rlvr_jax.plan.accounting import forward_flops  # noqa: E402
from rlvr_jax.sampling import SamplingConfig, Sampler  # noqa: E402
from rlvr_jax.train.program import train_program  # noqa: E402
from rlvr_jax.train.state import merge  # noqa: E402
from rlvr_jax.train.step import batch_from_rollout  # noqa: E402


def phase_flops(mc, n: int, G: int, P_bucket: int, N: int, chunk: int) -> dict:
    """Analytic matmul FLOPs of each timed phase: n prompts (bucket P_bucket) x G responses of N tokens."""
    B, T = n * G, P_bucket + N - 1
    shared = forward_flops(mc, n * P_bucket, P_bucket / 2, 0) + forward_flops(mc, B * N, P_bucket + N / 2, B * N)
    unshared = forward_flops(mc, B * T, T / 2, B * N)
    # the LM head is recomputed in the backward pass only when the responses span several logprob chunks
    head = forward_flops(mc, 0, 0, B * N) if N > chunk else 0.0
    return {"sample": forward_flops(mc, n * P_bucket, P_bucket, n) + sum(
                forward_flops(mc, B, P_bucket + t, B) for t in range(N - 1)),
            "fwd": shared, "grad": 3 * shared + head, "step": 3 * shared + head,
            "grad_unshared": 3 * unshared + head}


def timed(fn, *a):
    t = time.perf_counter()
    out = fn(*a)
    jax.block_until_ready(out)
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="smollm2-135m")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--venvs", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".venvs"))
    args = ap.parse_args()
    folder = os.path.join(args.venvs, f"iteration-weights-{args.shape}")
    cfg = bench_config()
    host_alloc.ensure(cfg.train.host_allocator)  # the process rlvr-train would run (restarts once)
    tok = load_tokenizer(folder)
    policy = from_pretrained(folder, dtype="float32")
    mc = policy.cfg
    program = train_program(cfg, policy, None, parallel.single_device_mesh(), 1000)
    state = program.init_state(policy)
    pg = program.policy_graphdef
    scfg = SamplingConfig.from_config(cfg, stop_token_ids=(), pad_id=tok.pad_token_id)
    sampler = Sampler()
    G, n, N = C.G, C.PROMPTS_PER_STEP, C.NEW_TOKENS
    rows = C.step_rows(0)
    prompts, mask = tokenize_prompts(tok, [r["prompt"] for r in rows], chat=False)
    step_fn = program.jit(donate=False)  # the loops' wiring, not donated: the same state is reused
    algo = cfg.algo

    def sample(params, key):
        return sampler(merge(pg, params), prompts, mask, key, scfg)

    def host(rollout):
        toks = np.asarray(rollout.tokens_BxN)
        m = np.asarray(rollout.mask_BxN).astype(bool)
        texts = [tok.decode(x[k].tolist(), skip_special_tokens=True) for x, k in zip(toks, m)]
        r = jnp.asarray([C.reward(s, rr["answer"]) for s, rr in zip(texts, [q for q in rows for _ in range(G)])])
        valid = jnp.ones_like(r, bool)
        adv, _ = compute_advantages(r.reshape(n, G), valid.reshape(n, G), algo)
        adv = adv + 0.1  # non-zero advantages, so the gradient is not trivially zero
        return batch_from_rollout(rollout, adv.reshape(-1), r > 0.5, valid)

    def logp(p, b, group):
        return response_logprobs_and_entropy(merge(pg, p), b["prompt_BxP"], b["prompt_mask_BxP"], b["response_BxN"],
                                             group, algo.logprob_chunk)[0]

    @jax.jit
    def fwd(params, b):
        return logp(params, b, G)

    def pg_loss(lp, b):
        ratio = jnp.exp(lp - b["logp_old_BxN"])
        m = b["mask_BxN"]
        return -jnp.sum(ratio * b["adv_B"][:, None] * m) / jnp.sum(m)

    @jax.jit
    def grad_shared(params, b):
        return jax.value_and_grad(lambda p: pg_loss(logp(p, b, G), b))(params)

    @jax.jit
    def grad_unshared(params, b):
        """As grad, but one full forward per row (algo.share_prompt = False)."""
        return jax.value_and_grad(lambda p: pg_loss(logp(p, b, 1), b))(params)

    D = 2048
    x = jnp.ones((D, D), jnp.float32)
    mm = jax.jit(lambda a: a @ a @ a @ a)
    P = prompts.shape[1]
    P_bucket = 32
    T = P_bucket + N - 1
    flops = {"matmul_ref": 3 * 2.0 * D ** 3, **phase_flops(mc, n, G, P_bucket, N, algo.logprob_chunk), "host": 0.0}
    times = {k: [] for k in flops}
    first = {}
    params = state.policy
    for rep in range(args.reps + 1):
        key = jax.random.key(rep)
        dt, _ = timed(mm, x)
        times["matmul_ref"].append(dt)
        dt, rollout = timed(sample, params, key)
        times["sample"].append(dt)
        dt, batch = timed(host, rollout)
        times["host"].append(dt)
        for name, fn in (("fwd", fwd), ("grad", grad_shared), ("grad_unshared", grad_unshared),
                         ("step", step_fn)):
            dt, _ = timed(fn, state if name == "step" else params, batch)
            times[name].append(dt)
        if rep == 0:
            first = {k: v.pop() for k, v in times.items()}
        print(f"rep {rep}: " + ", ".join(f"{k} {v[-1] if v else first[k]:.2f}s" for k, v in times.items()),
              flush=True)
    ref = flops["matmul_ref"] / statistics.median(times["matmul_ref"]) / 1e9
    out = {"prompt_tokens": int(P), "prompt_bucket": P_bucket, "train_T": T, "matmul_ref_gflops": ref,
           "loadavg": open("/proc/loadavg").read().split()[:3], "phases": {}}
    print(f"\nplain {D}x{D} matmul: {ref:.1f} GFLOP/s; load average {' '.join(out['loadavg'])}")
    print(f"{'phase':>20} {'median s':>9} {'first s':>8} {'GFLOP':>8} {'GFLOP/s':>8} {'% of matmul':>11}")
    for k, v in times.items():
        med = statistics.median(v)
        g = flops[k] / 1e9
        rate = g / med if med else 0.0
        out["phases"][k] = {"median_s": med, "first_s": first[k], "gflop": g, "gflops": rate}
        print(f"{k:>20} {med:9.2f} {first[k]:8.1f} {g:8.1f} {rate:8.1f} {100 * rate / ref:10.0f}%")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
