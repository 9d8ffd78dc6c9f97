"""The DLC memory network's loss: next-token cross-entropy on the rollouts it should remember.

The memory network models what the policy has already explored; `memory.train_on` picks which
rollouts it learns from (all, only correct, only incorrect). Only response tokens count (the
prompt is not something the policy explored).
"""
from __future__ import annotations

import jax.numpy as jnp

TRAIN_ON = ("all", "correct", "incorrect")


def memory_rollouts(success_B, valid_B, train_on: str):
    """Which rollouts the memory learns from `[B]` (bool), per `memory.train_on`."""
    if train_on not in TRAIN_ON:
        raise ValueError(f"config.memory.train_on: unknown choice {train_on!r}; known: {', '.join(TRAIN_ON)}")
    valid = jnp.asarray(valid_B).astype(bool)
    success = jnp.asarray(success_B).astype(bool)
    if train_on == "correct":
        return valid & success
    if train_on == "incorrect":
        return valid & ~success
    return valid


def memory_loss(logp_mem_BxT, mask_BxT, success_B, train_on: str, valid_B=None):
    """Token-mean cross-entropy -logp_mem over the response tokens of the selected rollouts.

    logp_mem_BxT: the memory network's logprobs of the sampled next tokens (`models.scoring`);
    mask_BxT: response tokens; success_B: reward > algo.success_threshold (flattened B = prompts x G).
    Returns (loss, metrics); the loss is 0 (and gives no gradient) when nothing is selected.
    """
    if valid_B is None:
        valid_B = jnp.ones(success_B.shape, bool)
    rows_B = memory_rollouts(success_B, valid_B, train_on)
    tok = jnp.asarray(mask_BxT).astype(bool) & rows_B[:, None]
    n_tok = jnp.sum(tok).astype(jnp.float32)
    loss = -jnp.sum(jnp.where(tok, logp_mem_BxT.astype(jnp.float32), 0.0)) / jnp.maximum(n_tok, 1.0)
    metrics = dict(memory_loss=loss, memory_tokens=n_tok,
                   memory_frac_rollouts=jnp.mean(rows_B.astype(jnp.float32)))
    return loss, metrics
