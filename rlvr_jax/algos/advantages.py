"""Advantage estimators over groups of rollouts, as a registry: a new estimator is one function.

Every estimator maps `rewards_BxG` (float32, B prompts x G rollouts) and `valid_BxG` (bool; False
marks padding in groups with fewer than G rollouts) plus the `algo` config group to `adv_BxG`.
Invalid entries always get advantage 0. Estimators only read fields declared in
`rlvr_jax.config.SCHEMA['algo']`. `compute_advantages` applies the configured estimator and then
the IAC calibration (`calibration.py`), and returns the statistics the train loop logs. More estimators
(pass_at_k, w_reinforce, psr, nsr, qae, pkpo) live in `diversity_advantages.py`, registered by the package
`__init__`.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from rlvr_jax.algos import calibration
from rlvr_jax.algos.unlikeliness import unlikeliness_rewards
from rlvr_jax.algos.groups import (as_valid, group_count, group_mean, group_std, masked_mean, successes,
                                   zero_std_groups)

Estimator = Callable  # (rewards_BxG, valid_BxG, algo_cfg) -> adv_BxG
_ESTIMATORS: dict[str, Estimator] = {}


def register_advantage(name: str):
    """Decorator: registers an estimator under `algo.estimator = name`."""
    def deco(fn):
        if name in _ESTIMATORS:
            raise ValueError(f"advantage estimator {name!r} is already registered")
        _ESTIMATORS[name] = fn
        return fn
    return deco


def get_estimator(name: str) -> Estimator:
    """The estimator registered under `name`; one clear line naming the config field otherwise."""
    if name not in _ESTIMATORS:
        raise ValueError(f"config.algo.estimator: unknown estimator {name!r}; known: {', '.join(sorted(_ESTIMATORS))}")
    return _ESTIMATORS[name]


def estimators() -> tuple[str, ...]:
    return tuple(sorted(_ESTIMATORS))


def _zero_invalid(adv_BxG, valid_BxG):
    return jnp.where(valid_BxG, adv_BxG, 0.0).astype(jnp.float32)


@register_advantage("grpo")
def grpo(rewards_BxG, valid_BxG, algo):
    """GRPO: (r - group mean) / (group std + algo.adv_eps), std with ddof `algo.std_ddof`.

    Zero-variance groups (all valid rewards equal) get exactly 0, whatever adv_eps is.
    With binary rewards, k successes of G and ddof 0 a success gets sqrt((G-k)/k), a failure -sqrt(k/(G-k)).
    """
    centered = rewards_BxG - group_mean(rewards_BxG, valid_BxG)
    std = group_std(rewards_BxG, valid_BxG, algo.std_ddof)
    flat = zero_std_groups(rewards_BxG, valid_BxG)[:, None]
    adv = jnp.where(flat, 0.0, centered / jnp.where(flat, 1.0, std + algo.adv_eps))
    return _zero_invalid(adv, valid_BxG)


@register_advantage("dr_grpo")
def dr_grpo(rewards_BxG, valid_BxG, algo):
    """Dr.GRPO: r - group mean (no std division, which up-weights easy and hard groups)."""
    del algo
    return _zero_invalid(rewards_BxG - group_mean(rewards_BxG, valid_BxG), valid_BxG)


@register_advantage("rloo")
def rloo(rewards_BxG, valid_BxG, algo):
    """RLOO: r_i - mean of the other valid rollouts' rewards = n/(n-1) (r_i - mean); 0 when n < 2."""
    del algo
    n = group_count(valid_BxG)
    scale = jnp.where(n > 1, n / jnp.maximum(n - 1.0, 1.0), 0.0)
    return _zero_invalid(scale * (rewards_BxG - group_mean(rewards_BxG, valid_BxG)), valid_BxG)


@register_advantage("reinforce_pp")
def reinforce_pp(rewards_BxG, valid_BxG, algo):
    """REINFORCE++-baseline: r - group mean, then divided by the std of these over the whole batch.

    Their batch mean is zero by construction, so only the scale is normalised. Flat groups (all
    rewards equal) are zeroed first, as in `grpo`: with an inexact reward such as 0.7, r - mean(r)
    is rounding residue, and dividing it by an equally tiny batch std would give O(1) advantages. Normalised per
    rollout (population std over all valid rollouts, + algo.adv_eps), not per token as in
    OpenRLHF, so the scale does not depend on response lengths.
    """
    flat_B = zero_std_groups(rewards_BxG, valid_BxG)  # exactly 0 there, not float residue of r - mean(r)
    centered = jnp.where(valid_BxG & ~flat_B[:, None], rewards_BxG - group_mean(rewards_BxG, valid_BxG), 0.0)
    n = jnp.maximum(jnp.sum(valid_BxG), 1).astype(jnp.float32)
    std = jnp.sqrt(jnp.sum(centered * centered) / n)
    adv = jnp.where(std > 0, centered / jnp.where(std > 0, std + algo.adv_eps, 1.0), 0.0)
    return _zero_invalid(adv, valid_BxG)


@register_advantage("passk")
def passk(rewards_BxG, valid_BxG, algo):
    """Best-of-group: a_i = max_j r_j - max_{j != i} r_j over the valid rollouts of the group.

    The leave-one-out-baseline estimator of the gradient of the expected best-of-group reward
    (max@G, which is pass@G for binary rewards): only a rollout that is strictly better than all
    the others gets credit (+1 for a unique success), everything else gets 0, and no rollout is
    pushed down. Needs no extra parameter; groups with a single valid rollout get 0.
    """
    del algo
    neg = jnp.finfo(jnp.float32).min
    r = jnp.where(valid_BxG, rewards_BxG, neg)
    G = r.shape[-1]
    best = jnp.max(r, axis=-1, keepdims=True)
    others_GxG = ~jnp.eye(G, dtype=bool)  # [i, j]: j is another rollout than i
    best_other = jnp.max(jnp.where(others_GxG[None], r[:, None, :], neg), axis=-1)
    has_other = jnp.sum(valid_BxG, axis=-1, keepdims=True) > 1
    return _zero_invalid(jnp.where(has_other, best - best_other, 0.0), valid_BxG)


def compute_advantages(rewards_BxG, valid_BxG, algo_cfg, seq_logp_BxG=None):
    """Unlikeliness transform, configured estimator, then IAC calibration: -> (adv_BxG float32, stats dict).

    seq_logp_BxG: each response's log-probability under the policy that sampled it (`unlikeliness.sequence_logp`);
    needed only when algo.unlikeliness_beta > 0.

    Stats: reward_mean, success_rate, frac_reward_zero_std (share of groups with at least one valid
    rollout whose rewards are all equal), adv_mean, adv_abs_mean, adv_pos_frac, iac_factor_mean/max.
    """
    rewards_BxG = jnp.asarray(rewards_BxG, jnp.float32)
    if rewards_BxG.ndim != 2:
        raise ValueError(f"compute_advantages: rewards must be [B, G], got shape {rewards_BxG.shape}")
    valid_BxG = as_valid(rewards_BxG, valid_BxG)
    shaped_BxG = rewards_BxG
    if algo_cfg.unlikeliness_beta > 0:
        if seq_logp_BxG is None:
            raise ValueError("config.algo.unlikeliness_beta: > 0 needs the responses' sequence log-probs")
        shaped_BxG = unlikeliness_rewards(rewards_BxG, valid_BxG, seq_logp_BxG, algo_cfg.unlikeliness_beta,
                                          algo_cfg.success_threshold)
    adv = get_estimator(algo_cfg.estimator)(shaped_BxG, valid_BxG, algo_cfg)
    adv, iac_stats = calibration.calibrate(adv, rewards_BxG, valid_BxG, algo_cfg)
    has_any_B = jnp.any(valid_BxG, axis=-1)
    stats = dict(
        reward_mean=masked_mean(rewards_BxG, valid_BxG),
        success_rate=masked_mean(successes(rewards_BxG, algo_cfg.success_threshold).astype(jnp.float32),
                                 valid_BxG),
        frac_reward_zero_std=masked_mean(zero_std_groups(rewards_BxG, valid_BxG).astype(jnp.float32), has_any_B),
        adv_mean=masked_mean(adv, valid_BxG),
        adv_abs_mean=masked_mean(jnp.abs(adv), valid_BxG),
        adv_pos_frac=masked_mean((adv > 0).astype(jnp.float32), valid_BxG),
        **iac_stats,
    )
    return adv, stats
