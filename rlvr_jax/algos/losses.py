"""The clipped policy-gradient surrogate, per token (PPO / GRPO / DAPO family).

Three log-probabilities of the same sampled tokens meet here:
  logp_new      the policy being trained (gradients flow through it);
  logp_old      the policy that produced the rollouts, as the trainer computes it (PPO ratio anchor);
  logp_sampler  what the sampler actually drew from (under DLC the tilted distribution, and
                always a slightly different numeric path than the trainer).
The truncated importance weight min(exp(logp_old - logp_sampler), tis_cap) corrects the
off-policyness between sampler and trainer; it is a constant (no gradient) multiplying the loss.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

MAX_LOG_RATIO = 20.0  # exp() argument bound: keeps a wild token finite, far outside any clip range


def broadcast_adv(adv, like_BxT):
    """Advantages as float32 [B, T]: one per sequence ([B]) is repeated over the tokens."""
    adv = jnp.asarray(adv, jnp.float32)
    if adv.ndim == like_BxT.ndim - 1:  # one advantage per sequence
        adv = adv[..., None]
    return jnp.broadcast_to(adv, like_BxT.shape)


def log_ratio(logp_new_BxT, logp_old_BxT):
    """log(pi_new / pi_old) per token in float32, bounded by MAX_LOG_RATIO."""
    return jnp.clip(logp_new_BxT.astype(jnp.float32) - logp_old_BxT.astype(jnp.float32), -MAX_LOG_RATIO,
                    MAX_LOG_RATIO)


def clipped_pg_loss(logp_new_BxT, logp_old_BxT, adv_BxT, *, eps_low: float, eps_high: float,
                    dual_clip: float = 0.0, logp_sampler_BxT=None, tis_cap: float = 0.0):
    """Per-token loss -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A), r = exp(logp_new - logp_old).

    dual_clip = c > 1 bounds the loss of negative advantages by -c A (Ye et al. 2020); 0 is off.
    tis_cap > 0 multiplies by the truncated importance weight (needs logp_sampler_BxT).
    adv may be [B] (one advantage per sequence) or [B, T].
    Returns (loss_BxT, aux) with aux: ratio, clip_low / clip_high (bool: the clip is active, so the
    token gives no gradient), dual_clipped (bool), tis_weight, tis_capped (bool).
    """
    adv = broadcast_adv(adv_BxT, logp_new_BxT)
    ratio = jnp.exp(log_ratio(logp_new_BxT, logp_old_BxT))
    unclipped = -adv * ratio
    clipped = -adv * jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high)
    loss = jnp.maximum(unclipped, clipped)
    clip_low = (adv < 0) & (ratio < 1.0 - eps_low)
    clip_high = (adv > 0) & (ratio > 1.0 + eps_high)
    dual_clipped = jnp.zeros(loss.shape, bool)
    if dual_clip:
        bound = -adv * dual_clip
        dual_clipped = (adv < 0) & (loss > bound)
        loss = jnp.where(adv < 0, jnp.minimum(loss, bound), loss)
    tis_weight, tis_capped = truncated_is_weight(logp_old_BxT, logp_sampler_BxT, tis_cap, loss.shape)
    loss = loss * tis_weight if tis_cap else loss
    aux = dict(ratio=ratio, clip_low=clip_low, clip_high=clip_high, dual_clipped=dual_clipped,
               tis_weight=tis_weight, tis_capped=tis_capped)
    return loss, aux


def truncated_is_weight(logp_old_BxT, logp_sampler_BxT, tis_cap: float, shape):
    """(min(exp(logp_old - logp_sampler), tis_cap) without gradient, bool: the cap bit); ones when tis_cap = 0."""
    if not tis_cap:
        return jnp.ones(shape, jnp.float32), jnp.zeros(shape, bool)
    if logp_sampler_BxT is None:
        raise ValueError("config.algo.tis_cap: > 0 needs the sampler's logprobs (logp_sampler_BxT)")
    raw = jnp.exp(jnp.clip(logp_old_BxT.astype(jnp.float32) - logp_sampler_BxT.astype(jnp.float32),
                           -MAX_LOG_RATIO, MAX_LOG_RATIO))
    return jax.lax.stop_gradient(jnp.minimum(raw, tis_cap)), raw > tis_cap
