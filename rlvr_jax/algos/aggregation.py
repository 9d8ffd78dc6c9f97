"""Loss aggregation over tokens and sequences: one enum of modes (`algo.loss_agg`), one function.

  token_mean               sum of all response-token losses / number of response tokens (DAPO);
  seq_mean_token_mean      mean over sequences of each sequence's token mean (GRPO);
  seq_mean_token_sum_norm  mean over sequences of each sequence's token *sum* / norm_tokens, a fixed
                           budget independent of response lengths (Dr.GRPO).
Sequences with no response token (padding rows) are left out of the sequence means.

`aggregate_parts` returns (numerator, denominator) so gradient accumulation over micro-batches
can sum both and divide once, giving exactly the full-batch value.
"""
from __future__ import annotations

import jax.numpy as jnp

MODES = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")


def aggregate_parts(loss_BxT, mask_BxT, mode: str, norm_tokens: int | None = None):
    """(numerator, denominator) of `aggregate`; both float32 scalars, additive over micro-batches."""
    if mode not in MODES:
        raise ValueError(f"config.algo.loss_agg: unknown mode {mode!r}; known: {', '.join(MODES)}")
    mask = jnp.asarray(mask_BxT).astype(bool)
    masked = jnp.where(mask, loss_BxT, 0.0).astype(jnp.float32)
    tokens_B = jnp.sum(mask, axis=-1).astype(jnp.float32)
    if mode == "token_mean":
        return jnp.sum(masked), jnp.sum(tokens_B)
    n_seq = jnp.sum(tokens_B > 0).astype(jnp.float32)
    if mode == "seq_mean_token_mean":
        return jnp.sum(jnp.sum(masked, axis=-1) / jnp.maximum(tokens_B, 1.0)), n_seq
    if norm_tokens is None or norm_tokens <= 0:
        raise ValueError("config.algo.loss_norm_tokens: seq_mean_token_sum_norm needs a token budget > 0")
    return jnp.sum(masked) / float(norm_tokens), n_seq


def aggregate(loss_BxT, mask_BxT, mode: str, norm_tokens: int | None = None):
    """Scalar loss from per-token losses under `mode` (see the module doc); 0 for an empty mask."""
    num, den = aggregate_parts(loss_BxT, mask_BxT, mode, norm_tokens)
    return num / jnp.maximum(den, 1.0)
