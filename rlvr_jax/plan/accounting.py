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


def projection_dims(mc) -> dict:
    """(in, out) of each projection of a layer, by the names LoRA targets (models/lora.py TARGETS)."""
    d, hd, H, K, f = mc.hidden_size, mc.head_dim_, mc.num_heads, mc.num_kv_heads, mc.intermediate_size
    return {"q_proj": (d, H * hd), "k_proj": (d, K * hd), "v_proj": (d, K * hd), "o_proj": (H * hd, d),
            "gate_proj": (d, f), "up_proj": (d, f), "down_proj": (f, d)}


def flops_parts(mc, tokens: int, context: int, head_tokens: int | None = None, lora=None) -> dict:
    """Matmul FLOPs of a forward pass by kind: "weights" (the layers' projections and the vocabulary
    projection of `head_tokens` of the tokens, default all), "attention" (scores and values: naive
    attention over `context` slots, as the model computes it: the full mask is evaluated) and "adapters"
    (LoRA's x @ A @ B on each target; lora = (rank, targets) or None)."""
    d, hd, H = mc.hidden_size, mc.head_dim_, mc.num_heads
    per_layer = sum(i * o for i, o in projection_dims(mc).values())
    head = tokens if head_tokens is None else head_tokens
    adapters = 0.0
    if lora:
        rank, targets = lora
        adapters = 2.0 * tokens * mc.num_layers * rank * sum(sum(projection_dims(mc)[t]) for t in targets)
    return {"weights": float(tokens) * 2 * mc.num_layers * per_layer + 2.0 * head * d * mc.vocab_size,
            "attention": float(tokens) * mc.num_layers * 4 * context * H * hd, "adapters": adapters}


def forward_flops(mc, tokens: int, context: int, head_tokens: int | None = None, lora=None) -> float:
    """Matmul FLOPs of a forward pass (the sum of `flops_parts`)."""
    return sum(flops_parts(mc, tokens, context, head_tokens, lora).values())


def lora_spec(cfg):
    """(rank, target names) of the config's LoRA adapters, or None (full fine-tuning)."""
    if not cfg.model.lora_rank:
        return None
    from rlvr_jax.models import lora
    return cfg.model.lora_rank, lora.parse_targets(cfg.model.lora_targets)


def step_flops(cfg, pc, mc) -> dict:
    """Analytic FLOPs of one RL step: sampling (prefill + every decode step) and all optimiser updates."""
    n, G, N = cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.rollout.max_new_tokens
    Pl = prompt_len(cfg)
    rows, S = n * G, Pl + N
    T = Pl + N - 1
    models = [pc] + ([mc] if mc is not None else [])
    ls = lora_spec(cfg)
    # merged LoRA sampling runs the plain graph; on the fly, every projection adds its adapter
    sl = ls if ls and cfg.model.lora_sampling == "on_the_fly" else None
    sample = sum(forward_flops(m, n * Pl, Pl, n, sl if i == 0 else None) +
                 forward_flops(m, rows * N, S, None, sl if i == 0 else None) for i, m in enumerate(models))
    per_rows = rows  # all mini-batches of one epoch together cover the rows once
    train = 0.0
    prompt_rows = n if cfg.algo.share_prompt else per_rows  # shared prompts run once per group
    for i, m in enumerate(models):
        r = 1 if m.remat else 0
        lo = ls if i == 0 else None
        # prompts (shared per group or not) feed only the last position to the head; responses all N
        a, b = flops_parts(m, prompt_rows * Pl, Pl, 0, lo), flops_parts(m, per_rows * N, T, None, lo)
        fwd = {k: a[k] + b[k] for k in a}
        # backward: activation gradients (1x forward) everywhere, weight gradients (1x) only of what trains:
        # under LoRA the frozen base's projections skip theirs
        frozen = lo is not None
        train += (2 + r + (0 if frozen else 1)) * fwd["weights"] + (3 + r) * (fwd["attention"] + fwd["adapters"])
        if i == 0 and cfg.algo.kl_coef > 0:  # the reference forward (under LoRA: the base, adapters at zero)
            train += sum(fwd.values())
    train *= cfg.algo.ppo_epochs
    return {"sample": sample, "train": train, "total": sample + train}
