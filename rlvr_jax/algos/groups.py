"""Masked statistics over groups of rollouts: `[B, G]` arrays where `valid_BxG` marks real rollouts.

Padded groups (fewer than G valid rollouts) are a first-class case: every statistic here only
looks at the valid entries, and a group with no valid entry gives zeros, never NaN.
"""
from __future__ import annotations

import jax.numpy as jnp


def as_valid(rewards_BxG, valid_BxG=None):
    """The valid mask as bool (all True when None)."""
    if valid_BxG is None:
        return jnp.ones(jnp.shape(rewards_BxG), bool)
    return jnp.asarray(valid_BxG).astype(bool)


def group_count(valid_BxG):
    """Number of valid rollouts per group, float32 `[B, 1]`."""
    return jnp.sum(valid_BxG, axis=-1, keepdims=True).astype(jnp.float32)


def group_mean(x_BxG, valid_BxG):
    """Mean over the valid entries of each group, `[B, 1]` (0 for an empty group)."""
    n = group_count(valid_BxG)
    return jnp.sum(jnp.where(valid_BxG, x_BxG, 0.0), axis=-1, keepdims=True) / jnp.maximum(n, 1.0)


def group_std(x_BxG, valid_BxG, ddof: int = 0):
    """Std over the valid entries of each group with `ddof`, `[B, 1]` (0 when fewer than ddof + 1)."""
    n = group_count(valid_BxG)
    centered = jnp.where(valid_BxG, x_BxG - group_mean(x_BxG, valid_BxG), 0.0)
    var = jnp.sum(centered * centered, axis=-1, keepdims=True) / jnp.maximum(n - ddof, 1.0)
    return jnp.sqrt(var)


def zero_std_groups(rewards_BxG, valid_BxG=None):
    """Groups whose valid rewards are all equal (no learning signal; DAPO dynamic sampling drops them), `[B]`.

    Decided by max == min rather than std == 0 so float rounding in the mean cannot hide it.
    Groups with at most one valid rollout count as zero-std.
    """
    valid = as_valid(rewards_BxG, valid_BxG)
    hi = jnp.max(jnp.where(valid, rewards_BxG, -jnp.inf), axis=-1)
    lo = jnp.min(jnp.where(valid, rewards_BxG, jnp.inf), axis=-1)
    return (hi <= lo) | (jnp.sum(valid, axis=-1) <= 1)


def successes(rewards_BxG, threshold: float):
    """Which rollouts count as correct: reward strictly above the threshold (`algo.success_threshold`)."""
    return jnp.asarray(rewards_BxG) > threshold


def masked_mean(x, mask):
    """Mean of x over mask (0 when the mask is empty); any shape."""
    m = jnp.asarray(mask).astype(bool)
    return jnp.sum(jnp.where(m, x, 0.0)) / jnp.maximum(jnp.sum(m), 1).astype(jnp.float32)
