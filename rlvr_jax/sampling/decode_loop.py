"""The decode loop: one `lax.while_loop` step feeds the last token to the policy (and the memory
network, in lock-step, each with its own KV cache) and samples the next one.

It stops when every row has sampled a stop token, at max_new_tokens, or when the cache is full.
Token t of row r uses key fold_in(fold_in(key, r), t) (`next_token.step_keys`) whatever the models and
whatever the batch, so mu = 0 reproduces the plain sampler and the continuous engine draws the same tokens.
A row is done at a stop token or at its own limit (`limit_B`, at most max_new_tokens).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rlvr_jax.sampling.config import SamplingConfig
from rlvr_jax.sampling.next_token import sample_step, step_keys
from rlvr_jax.sampling.state import DecodeState


def is_stop(token_B, cfg: SamplingConfig):
    if not cfg.stop_token_ids:
        return jnp.zeros(token_B.shape, bool)
    return jnp.isin(token_B, jnp.asarray(cfg.stop_token_ids, jnp.int32))


def record(state: DecodeState, token_B, logp_sampler_B, logp_policy_B, cfg: SamplingConfig) -> DecodeState:
    """Writes step `state.step`'s samples (pad / 0 for rows already done) and advances the step."""
    done = state.done_B
    token_B = jnp.where(done, cfg.pad_id, token_B)
    zero = jnp.zeros((), jnp.float32)
    col = state.step

    def put(buf_BxN, x_B):
        return jax.lax.dynamic_update_slice_in_dim(buf_BxN, x_B[:, None].astype(buf_BxN.dtype), col, axis=1)

    return state.replace(
        step=state.step + 1,
        last_token_B=token_B,
        next_position_B=state.next_position_B + 1,
        done_B=done | is_stop(token_B, cfg) | (col + 1 >= state.limit_B),
        tokens_BxN=put(state.tokens_BxN, token_B),
        logp_sampler_BxN=put(state.logp_sampler_BxN, jnp.where(done, zero, logp_sampler_B)),
        logp_policy_BxN=put(state.logp_policy_BxN, jnp.where(done, zero, logp_policy_B)),
    )


def decode(policy, memory, state: DecodeState, kv_mask_BxS, prompt_len: int, keys_B, cfg: SamplingConfig,
           constrain=lambda x, names: x) -> DecodeState:
    """Runs decode steps until all rows are done, max_new_tokens, or the cache is full (keys_B: `row_keys`)."""
    cache_len = kv_mask_BxS.shape[1]

    def cond(s: DecodeState):
        slot = prompt_len + s.step - 1  # where this step's input token is written
        return (s.step < cfg.max_new_tokens) & (slot < cache_len) & ~jnp.all(s.done_B)

    def body(s: DecodeState) -> DecodeState:
        slot = prompt_len + s.step - 1
        tok_Bx1 = s.last_token_B[:, None]
        pos_Bx1 = s.next_position_B[:, None]
        z_p, cache = policy(tok_Bx1, pos_Bx1, kv_mask_BxS=kv_mask_BxS, cache=s.cache, cache_index=slot)
        z_m, mem_cache = None, None
        if memory is not None:
            z_m, mem_cache = memory(tok_Bx1, pos_Bx1, kv_mask_BxS=kv_mask_BxS, cache=s.memory_cache,
                                    cache_index=slot)
            z_m = z_m[:, 0]
        token, lps, lpp = sample_step(step_keys(keys_B, s.step), z_p[:, 0], z_m, cfg)
        s = s.replace(cache=cache, memory_cache=mem_cache)
        return record(s, constrain(token, ("batch",)), lps, lpp, cfg)

    return jax.lax.while_loop(cond, body, state)
