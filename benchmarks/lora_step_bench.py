"""The train step with LoRA against full fine-tuning, same model, same batch: seconds per step (the two programs
timed in alternation, so machine load hits both alike) and the train state's bytes (params, adapters, optimiser).

    python benchmarks/lora_step_bench.py [--preset smollm2-135m] [--rank 16] [--rows 32] [--prompt 64] [--new 160]
"""
from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax import models, parallel
from rlvr_jax.config import base_config
from rlvr_jax.models import lora
from rlvr_jax.train.program import train_program
from interleave import interleaved_medians  # benchmarks/ (the script's folder)


def nbytes(tree) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="smollm2-135m")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=160)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--out", default="benchmarks/results/lora_step.json")
    a = ap.parse_args()
    cfg = base_config()
    cfg.rollout.max_new_tokens = a.new
    cfg.algo.logprob_chunk = 64
    pcfg = models.preset(a.preset)
    mesh = parallel.single_device_mesh()
    runs = {}
    for name, rank in (("full", 0), (f"lora r{a.rank}", a.rank)):
        pol = models.create(pcfg, 0)
        if rank:
            lora.add_lora(pol, rank, 16.0, seed=1)
        program = train_program(cfg, pol, None, mesh, 100, rows=a.rows)
        state = program.init_state(pol, None)
        runs[name] = [program.jit(donate=False), state, {
            "trainable_bytes": nbytes(state.policy), "optimizer_bytes": nbytes(state.policy_opt),
            "frozen_base_bytes": nbytes(state.base), "state_bytes": nbytes(state)}]
    rng = np.random.default_rng(0)
    B, P, N, G = a.rows, a.prompt, a.new, cfg.rollout.group_size
    batch = dict(prompt_BxP=jnp.asarray(np.repeat(rng.integers(1, pcfg.vocab_size, (B // G, P)), G, 0), jnp.int32),
                 prompt_mask_BxP=jnp.ones((B, P), bool),
                 response_BxN=jnp.asarray(rng.integers(1, pcfg.vocab_size, (B, N)), jnp.int32),
                 mask_BxN=jnp.ones((B, N), bool), adv_B=jnp.asarray(rng.normal(size=B), jnp.float32),
                 logp_old_BxN=-jnp.ones((B, N)) * 5, logp_sampler_BxN=-jnp.ones((B, N)) * 5,
                 success_B=jnp.ones(B, bool), valid_B=jnp.ones(B, bool))
    secs = interleaved_medians({name: (lambda step=step, state=state: step(state, batch))
                                for name, (step, state, _) in runs.items()}, a.reps)  # round 0 compiles
    out = {"preset": a.preset, "rows": B, "prompt": P, "new_tokens": N, "backend": jax.default_backend(), "runs": {}}
    for name, (_, _, info) in runs.items():
        out["runs"][name] = {"s_per_step": secs[name], **info}
        print(f"{name:<10} {out['runs'][name]['s_per_step']:.3f} s/step  state {info['state_bytes'] / 2**20:.1f} MiB "
              f"(trainable {info['trainable_bytes'] / 2**20:.1f}, optimiser {info['optimizer_bytes'] / 2**20:.1f}, "
              f"frozen base {info['frozen_base_bytes'] / 2**20:.1f})", flush=True)
    full, lo = out["runs"]["full"], out["runs"][f"lora r{a.rank}"]
    print(f"LoRA / full: step time x{lo['s_per_step'] / full['s_per_step']:.2f}, "
          f"train state x{lo['state_bytes'] / full['state_bytes']:.3f}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
