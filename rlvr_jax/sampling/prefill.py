"""Prefill: run each prompt once, then copy its keys/values into the G decode rows of the cache.

Prompts are left-padded to a bucket length P, so every row's last prompt token sits in slot
P - 1 and all rows write their next token at the same slot. RoPE positions count real tokens
only (cumsum(mask) - 1), and the kv mask hides the padding slots.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rlvr_jax.models.transformer import (CACHE_AXES, CACHE_LEN_AXIS, cache_length, init_cache,  # noqa: F401
                                         prompt_positions)


def prefill(model, prompts_BxP, prompt_mask_BxP, big_cache, num_samples: int, constrain=lambda x, names: x):
    """Runs the prompts through `model`, writes their K/V into slots [0, P) of `big_cache` for G rows each.

    Returns (last-position logits of the B prompts [B, V] float32, the updated cache with B*G rows).
    `big_cache` may hold stale values past slot P: they are never attended to before being overwritten.
    """
    B, P = prompts_BxP.shape
    small = init_cache(model.cfg, B, P)
    small = [(constrain(k, _KV), constrain(v, _KV)) for k, v in small]
    h_BxPxD, small = model(prompts_BxP, prompt_positions(prompt_mask_BxP), kv_mask_BxS=prompt_mask_BxP,
                           cache=small, cache_index=0, return_hidden=True)
    logits_BxV = model.project(h_BxPxD[:, -1:])[:, 0].astype(jnp.float32)
    out = []
    for (k_small, v_small), (k_big, v_big) in zip(small, big_cache):
        k_rep = jnp.repeat(k_small, num_samples, axis=0) if num_samples > 1 else k_small
        v_rep = jnp.repeat(v_small, num_samples, axis=0) if num_samples > 1 else v_small
        k_big = jax.lax.dynamic_update_slice_in_dim(k_big, k_rep.astype(k_big.dtype), 0, axis=CACHE_LEN_AXIS)
        v_big = jax.lax.dynamic_update_slice_in_dim(v_big, v_rep.astype(v_big.dtype), 0, axis=CACHE_LEN_AXIS)
        out.append((constrain(k_big, _KV), constrain(v_big, _KV)))
    return logits_BxV, out


_KV = CACHE_AXES
