"""IAC, inverse-success advantage calibration (arXiv 2601.15609), composable with any estimator.

For a group with k = |S+| successes (valid rollouts with reward > `algo.success_threshold`) among
its n valid rollouts (n = G without padding), every *positive* advantage is multiplied by
f = (n - k)^alpha; negative and zero advantages are unchanged. Easy queries (k near n) stop
dominating the update, hard ones get the push. An all-correct group gets f = 0^alpha, which is 0
for alpha > 0 and 1 for alpha = 0 (0^0 = 1: alpha = 0 switches the calibration off exactly).

The paper does not say whether f is renormalised; `algo.iac_renorm` chooses:
  none        f as is (paper formula; advantage scale grows with G);
  g_alpha     f / n^alpha, so f lies in [0, 1];
  batch_mean  f / mean(f over the batch's groups that have a positive advantage), so the
              calibration re-weights groups without changing the average positive push.
"""
from __future__ import annotations

import jax.numpy as jnp

from rlvr_jax.algos.groups import group_count, successes

RENORMS = ("none", "g_alpha", "batch_mean")


def iac_factors(adv_BxG, rewards_BxG, valid_BxG, *, alpha: float, renorm: str, threshold: float):
    """Per-group IAC factor `[B]` (after renormalisation) and the groups it acts on `[B]` (bool)."""
    if renorm not in RENORMS:
        raise ValueError(f"config.algo.iac_renorm: unknown renormalisation {renorm!r}; known: {', '.join(RENORMS)}")
    n_B = group_count(valid_BxG)[:, 0]
    k_B = jnp.sum(successes(rewards_BxG, threshold) & valid_BxG, axis=-1).astype(jnp.float32)
    factor_B = jnp.power(n_B - k_B, alpha)  # jnp.power(0., 0.) == 1
    active_B = jnp.any((adv_BxG > 0) & valid_BxG, axis=-1)
    if renorm == "g_alpha":
        factor_B = factor_B / jnp.where(n_B > 0, jnp.power(n_B, alpha), 1.0)
    elif renorm == "batch_mean":
        n_active = jnp.sum(active_B)
        mean = jnp.sum(jnp.where(active_B, factor_B, 0.0)) / jnp.maximum(n_active, 1).astype(jnp.float32)
        factor_B = jnp.where(mean > 0, factor_B / jnp.where(mean > 0, mean, 1.0), factor_B)
    return factor_B, active_B


def apply_iac(adv_BxG, factor_B):
    """Positive advantages times their group's factor; the rest unchanged."""
    return jnp.where(adv_BxG > 0, adv_BxG * factor_B[:, None], adv_BxG)


def calibrate(adv_BxG, rewards_BxG, valid_BxG, algo):
    """Applies IAC when `algo.iac`; -> (adv_BxG, {iac_factor_mean, iac_factor_max}).

    Factor statistics are over the groups with a positive advantage (0 when there is none);
    with IAC off the factor is 1.
    """
    if not algo.iac:
        one = jnp.ones((), jnp.float32)
        return adv_BxG, dict(iac_factor_mean=one, iac_factor_max=one)
    factor_B, active_B = iac_factors(adv_BxG, rewards_BxG, valid_BxG, alpha=algo.iac_alpha,
                                     renorm=algo.iac_renorm, threshold=algo.success_threshold)
    n_active = jnp.maximum(jnp.sum(active_B), 1).astype(jnp.float32)
    stats = dict(iac_factor_mean=jnp.sum(jnp.where(active_B, factor_B, 0.0)) / n_active,
                 iac_factor_max=jnp.max(jnp.where(active_B, factor_B, 0.0)))
    return apply_iac(adv_BxG, factor_B), stats
