"""The unlikeliness reward (He et al. 2025, "Rewarding the Unlikely", arXiv 2506.02355).

GRPO pushes up the correct responses the policy already finds likely, which sharpens onto them. The
unlikeliness reward ranks a group's correct responses by their sequence log-probability under the policy
that sampled them and scales each reward by

    r'_i = r_i * (1 - beta * (G - rank_i) / G),   rank_i = 0 for the most likely correct response,

so the most likely correct response keeps 1 - beta of its reward and rarer correct ones keep more. Wrong
responses (reward <= algo.success_threshold) and padding keep their rewards. The transform runs before
any estimator, so it composes with every `algo.estimator` and with IAC.
"""
from __future__ import annotations

import jax.numpy as jnp

from rlvr_jax.algos.groups import successes


def unlikeliness_rewards(rewards_BxG, valid_BxG, seq_logp_BxG, beta: float, success_threshold: float):
    """Rewards after the unlikeliness transform `[B, G]` (float32); beta = 0 returns them unchanged."""
    rewards = jnp.asarray(rewards_BxG, jnp.float32)
    if beta == 0:
        return rewards
    G = rewards.shape[-1]
    correct = successes(rewards, success_threshold) & jnp.asarray(valid_BxG, bool)
    logp = jnp.asarray(seq_logp_BxG, jnp.float32)
    # rank among the correct ones, most likely first: how many correct responses are strictly more likely
    # (ties broken by position so ranks are distinct, as a sort would give)
    idx = jnp.arange(G)
    more_likely = (logp[:, None, :] > logp[:, :, None]) | ((logp[:, None, :] == logp[:, :, None])
                                                            & (idx[None, None, :] < idx[None, :, None]))
    rank = jnp.sum(more_likely & correct[:, None, :], axis=-1).astype(jnp.float32)
    scale = 1.0 - beta * (G - rank) / G
    return jnp.where(correct, rewards * scale, rewards)


def sequence_logp(logp_BxN, mask_BxN):
    """Sum of a response's token log-probs over its response tokens `[B]` (float32)."""
    return jnp.sum(jnp.where(jnp.asarray(mask_BxN, bool), jnp.asarray(logp_BxN, jnp.float32), 0.0), axis=-1)
