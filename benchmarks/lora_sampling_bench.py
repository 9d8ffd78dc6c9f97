"""LoRA rollouts: adapters applied in every projection ('on_the_fly') against folded into the kernels once per
step ('merged', the fold timed in), with the plain base model as the floor; same prompts, same sampler.

    python benchmarks/lora_sampling_bench.py [--preset smollm2-135m] [--rank 16] [--rows 8] [--new 64]
Prints seconds per rollout call (median of --reps) and the ratios to the base; writes --out JSON.
"""
from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np
from flax import nnx

from rlvr_jax import models
from rlvr_jax.models import lora
from rlvr_jax.sampling import Sampler, SamplingConfig
from interleave import interleaved_medians  # benchmarks/ (the script's folder)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="smollm2-135m")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/lora_sampling.json")
    a = ap.parse_args()
    cfg = models.preset(a.preset)
    base = models.create(cfg, seed=0)
    model = lora.add_lora(models.create(cfg, seed=0), a.rank, 16.0, seed=1)
    gd, params = nnx.split(model, nnx.Param)
    adapters, frozen = lora.split(params)
    adapters = jax.tree.map(lambda x: x + 1e-3, adapters)  # moved adapters: B != 0
    params = lora.join(frozen, adapters)
    plain_gd = lora.base_graphdef(gd, params)
    merge = jax.jit(lambda p: lora.merged_params(gd, p))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, cfg.vocab_size, (a.rows, a.prompt)).astype(np.int32)
    mask = np.ones_like(ids, bool)
    scfg = SamplingConfig(max_new_tokens=a.new, temperature=1.0, num_samples=1, prompt_buckets=(a.prompt,),
                          stop_token_ids=())
    sampler = Sampler()
    runs = {"base (no adapters)": lambda: base,
            "lora on_the_fly": lambda: nnx.merge(gd, params),
            "lora merged (fold included)": lambda: nnx.merge(plain_gd, merge(params))}
    out = {"preset": a.preset, "rank": a.rank, "rows": a.rows, "prompt": a.prompt, "new_tokens": a.new,
           "backend": jax.default_backend(), "seconds": {}}
    key = jax.random.key(0)
    calls = {name: (lambda get=get: sampler(get(), ids, mask, key, scfg).tokens_BxN) for name, get in runs.items()}
    out["seconds"] = interleaved_medians(calls, a.reps)  # round 0 compiles
    for name in runs:
        print(f"{name:<30} {out['seconds'][name]:.3f} s/call", flush=True)
    floor = out["seconds"]["base (no adapters)"]
    for name, s in out["seconds"].items():
        print(f"{name:<30} x{s / floor:.3f} of the base")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
