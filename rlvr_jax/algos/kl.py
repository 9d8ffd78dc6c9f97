"""Per-token estimators of KL(pi || pi_ref) from the sampled tokens' logprobs (Schulman's k1, k2, k3).

With x ~ pi and log_ratio = log pi(x) - log pi_ref(x):
  k1 = log_ratio                          unbiased, high variance, can be negative;
  k2 = log_ratio^2 / 2                    biased, low variance, >= 0;
  k3 = exp(-log_ratio) - 1 + log_ratio    unbiased, low variance, >= 0 (GRPO's choice).
"""
from __future__ import annotations

import jax.numpy as jnp

ESTIMATORS = ("k1", "k2", "k3")
_MAX_LOG_RATIO = 20.0  # bound inside exp() so one wild token cannot make the loss infinite


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
    return jnp.exp(neg) - 1.0 - neg
