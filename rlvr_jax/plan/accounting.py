"""Per-chip bytes and analytic FLOPs of an RL step: the arithmetic behind `rlvr-compile`'s report.

Pure functions of the config, the model configs and shardings; nothing here compiles or allocates.
"""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import NamedSharding

from rlvr_jax.config import int_list
from rlvr_jax.parallel.sharding import logical_to_spec

_KV = ("batch", "length", "kv_heads", "head_dim")


def prompt_len(cfg) -> int:
    """The padded prompt length planned for: the largest prompt bucket (the worst case)."""
    return max(int_list(cfg.rollout.prompt_buckets, "rollout.prompt_buckets"))


def chip_bytes(tree, shardings) -> int:
    """Bytes one device holds of `tree` placed with `shardings` (from each shard's shape)."""
    total = 0
    for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
        total += math.prod(s.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
    return total


def kv_cache_bytes(model_cfg, rows: int, length: int, mesh, rules) -> int:
    """Per-device bytes of a KV cache (k and v, all layers) laid out per the sampling rules."""
    shape = (rows, length, model_cfg.num_kv_heads, model_cfg.head_dim_)
    spec = logical_to_spec(_KV, shape, mesh, rules)
    per = math.prod(NamedSharding(mesh, spec).shard_shape(shape)) * np.dtype(model_cfg.jnp_dtype).itemsize
    return 2 * model_cfg.num_layers * per


def forward_flops(mc, tokens: int, context: int, head_tokens: int | None = None) -> float:
    """Matmul FLOPs of a forward pass over `tokens` tokens each attending `context` slots (naive attention,
    as the model computes it: the full mask is evaluated), plus the vocabulary projection of `head_tokens`
    of them (default: all)."""
    d, hd, H, K = mc.hidden_size, mc.head_dim_, mc.num_heads, mc.num_kv_heads
    per_layer = d * hd * (2 * H + 2 * K) + 3 * d * mc.intermediate_size
    attn = mc.num_layers * 4 * context * H * hd
    head = tokens if head_tokens is None else head_tokens
    return float(tokens) * (2 * mc.num_layers * per_layer + attn) + 2.0 * head * d * mc.vocab_size


def step_flops(cfg, pc, mc) -> dict:
    """Analytic FLOPs of one RL step: sampling (prefill + every decode step) and all optimiser updates."""
    n, G, N = cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.rollout.max_new_tokens
    Pl = prompt_len(cfg)
    rows, S = n * G, Pl + N
    T = Pl + N - 1
    models = [pc] + ([mc] if mc is not None else [])
    sample = sum(forward_flops(m, n * Pl, Pl, n) + forward_flops(m, rows * N, S) for m in models)
    per_rows = rows  # all mini-batches of one epoch together cover the rows once
    train = 0.0
    prompt_rows = n if cfg.algo.share_prompt else per_rows  # shared prompts run once per group
    for i, m in enumerate(models):
        mult = 3 + (1 if m.remat else 0)
        # prompts (shared per group or not) feed only the last position to the head; responses all N
        fwd = forward_flops(m, prompt_rows * Pl, Pl, 0) + forward_flops(m, per_rows * N, T)
        train += mult * fwd
        if i == 0 and cfg.algo.kl_coef > 0:
            train += fwd
    train *= cfg.algo.ppo_epochs
    return {"sample": sample, "train": train, "total": sample + train}
