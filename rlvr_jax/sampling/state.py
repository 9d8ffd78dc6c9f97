"""Pytrees of the sampler: the decode-loop carry and the `Rollout` it returns.

Shape letters: B rows (= prompts * G, prompt-major: row i*G + j is sample j of prompt i),
P padded prompt length, N max new tokens, S cache slots (P + N), V vocabulary.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Rollout:
    """Sampled responses and what the trainer needs to score them."""

    prompt_tokens_BxP: jax.Array  # int32, left-padded
    prompt_mask_BxP: jax.Array  # bool, True on real prompt tokens
    tokens_BxN: jax.Array  # int32 response, pad_id after the stop token
    mask_BxN: jax.Array  # bool, True on response tokens including the stop token
    lengths_B: jax.Array  # int32, mask_BxN.sum(-1)
    truncated_B: jax.Array  # bool, no stop token within max_new_tokens
    logp_sampler_BxN: jax.Array  # float32, log-prob under the sampling distribution (0 where masked)
    logp_policy_BxN: jax.Array  # float32, log_softmax(z_policy) at T = 1 (0 where masked)

    @property
    def num_rows(self) -> int:
        return self.tokens_BxN.shape[0]


@struct.dataclass
class DecodeState:
    """The `lax.while_loop` carry; `step` is the index of the next token to sample."""

    step: jax.Array  # int32 scalar
    last_token_B: jax.Array  # int32, the token sampled at step - 1 (fed to the models next)
    next_position_B: jax.Array  # int32, RoPE position of last_token_B
    done_B: jax.Array  # bool, a stop token has been sampled or the row's limit reached
    limit_B: jax.Array  # int32, the row's own cap on new tokens (<= N)
    tokens_BxN: jax.Array
    logp_sampler_BxN: jax.Array
    logp_policy_BxN: jax.Array
    cache: Any  # policy KV cache: per layer (k_BxSxKxD, v_BxSxKxD)
    memory_cache: Any  # memory-network KV cache, or None


def finalize(prompt_tokens_BxP, prompt_mask_BxP, tokens_BxN, logp_sampler_BxN, logp_policy_BxN,
             stop_token_ids: tuple[int, ...], pad_id: int, limit_B=None) -> Rollout:
    """Masks everything after the first stop token (and past a row's own `limit_B`, if given) and fills
    in lengths and the truncated flag (no stop token within the response)."""
    if stop_token_ids:
        is_stop = jnp.isin(tokens_BxN, jnp.asarray(stop_token_ids, jnp.int32))
    else:
        is_stop = jnp.zeros(tokens_BxN.shape, bool)
    stops_before = jnp.cumsum(is_stop.astype(jnp.int32), axis=-1) - is_stop.astype(jnp.int32)
    mask = stops_before == 0
    if limit_B is not None:
        mask &= jnp.arange(tokens_BxN.shape[1])[None, :] < limit_B[:, None]
    zero = jnp.zeros((), jnp.float32)
    return Rollout(
        prompt_tokens_BxP=prompt_tokens_BxP.astype(jnp.int32),
        prompt_mask_BxP=prompt_mask_BxP.astype(bool),
        tokens_BxN=jnp.where(mask, tokens_BxN, pad_id).astype(jnp.int32),
        mask_BxN=mask,
        lengths_B=mask.sum(-1).astype(jnp.int32),
        truncated_B=~jnp.any(is_stop & mask, axis=-1),
        logp_sampler_BxN=jnp.where(mask, logp_sampler_BxN, zero),
        logp_policy_BxN=jnp.where(mask, logp_policy_BxN, zero),
    )
