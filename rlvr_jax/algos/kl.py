"""Per-token estimators of KL(pi || pi_ref) from the sampled tokens' logprobs (Schulman's k1, k2, k3).

With x ~ pi and log_ratio = log pi(x) - log pi_ref(x):
  k1 = log_ratio                          unbiased, high variance, can be negative;
  k2 = log_ratio^2 / 2                    biased, low variance, >= 0;
  k3 = exp(-log_ratio) - 1 + log_ratio    unbiased, low variance, >= 0 (GRPO's choice).

k3 grows like exp(|log_ratio|): one token far off the reference would reach ~5e8 in value and in
gradient and swamp the update even after global clipping, so its estimate is clamped to
[0, K3_MAX] (verl clamps at 10 too); the clamp has zero gradient outside, so such a token stops
pulling rather than dominating.
"""
from __future__ import annotations

import jax.numpy as jnp

ESTIMATORS = ("k1", "k2", "k3")
_MAX_LOG_RATIO = 20.0  # bound inside exp() so one wild token cannot make the loss infinite
K3_MAX = 10.0  # the k3 estimate is clamped to [0, K3_MAX] per token


def kl_per_token(logp_BxT, logp_ref_BxT, estimator: str):
    """KL(pi || pi_ref) estimate per token, float32 `[B, T]`."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"config.algo.kl_estimator: unknown estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
    log_ratio = logp_BxT.astype(jnp.float32) - logp_ref_BxT.astype(jnp.float32)
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio * log_ratio
    neg = jnp.clip(-log_ratio, -_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    return jnp.clip(jnp.exp(neg) - 1.0 - neg, 0.0, K3_MAX)
