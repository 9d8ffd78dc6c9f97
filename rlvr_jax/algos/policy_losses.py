"""Per-token policy losses, as a registry selected by `algo.policy_loss`: the one seam of the objective.

Every loss maps the same per-token inputs (log-probs of the trained policy and of the policy that sampled, the
advantages (per sequence or [B, T]), the response mask, the per-token entropy and an RNG key) to a per-token loss
and a fixed set of boolean diagnostics; aggregation, KL, the entropy bonus and the truncated importance
weight are applied around it by `objective.policy_objective`, the same for every loss.

  ppo_clip  the clipped surrogate (PPO, GRPO, DAPO with clip-higher): `losses.clipped_pg_loss`.
  clip_cov  Clip-Cov (Cui et al. 2025, arXiv 2505.22617; verl `compute_policy_loss_clip_cov`): the clipped
            surrogate, with the gradient cut from a random `algo.clip_cov_ratio` share of the tokens whose
            centred covariance (A - mean A)(log p - mean log p) lies in (clip_cov_lb, clip_cov_ub) and that
            the PPO clip has not already cut.
  kl_cov    KL-Cov (same paper; verl `compute_policy_loss_kl_cov`): the unclipped surrogate -r A, plus
            `algo.kl_cov_coef` * |log r| on the top `algo.kl_cov_ratio` share of tokens by that covariance.
  gspo      GSPO (Zheng et al. 2025, arXiv 2507.18071): the clip acts on the sequence ratio
            exp(mean_t log r_t) instead of each token's, with each token's gradient its own log-prob's.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rlvr_jax.algos.groups import masked_mean
from rlvr_jax.algos.losses import MAX_LOG_RATIO, broadcast_adv, clipped_pg_loss, log_ratio

POLICY_LOSSES = ("ppo_clip", "clip_cov", "kl_cov", "gspo")


def token_covariance(adv_BxT, logp_new_BxT, mask_BxT):
    """(A - mean A)(log p - mean log p) per token, means over the mask; no gradient (a selection score)."""
    lp = jax.lax.stop_gradient(logp_new_BxT).astype(jnp.float32)
    return (adv_BxT - masked_mean(adv_BxT, mask_BxT)) * (lp - masked_mean(lp, mask_BxT))


def share_count(ratio: float, mask_BxT):
    """max(floor(ratio * tokens), 1): how many tokens a covariance method selects (verl's count)."""
    n = jnp.sum(mask_BxT).astype(jnp.float32)
    return jnp.maximum(jnp.floor(ratio * n), 1.0).astype(jnp.int32)


def first_k(score_BxT, eligible_BxT, k):
    """The k eligible tokens of the largest score (fewer when fewer are eligible), as a bool [B, T]."""
    flat = jnp.where(eligible_BxT, score_BxT.astype(jnp.float32), -jnp.inf).reshape(-1)
    order = jnp.argsort(-flat, stable=True)
    rank = jnp.zeros(flat.shape, jnp.int32).at[order].set(jnp.arange(flat.size, dtype=jnp.int32))
    return eligible_BxT & (rank.reshape(score_BxT.shape) < k)


def _no(shape):
    return jnp.zeros(shape, bool)


def ppo_clip(logp_new_BxT, logp_old_BxT, adv_BxT, mask_BxT, entropy_BxT, algo, key):
    """The clipped surrogate with the dual clip (no covariance selection)."""
    loss, aux = clipped_pg_loss(logp_new_BxT, logp_old_BxT, adv_BxT, eps_low=algo.clip_eps_low,
                                eps_high=algo.clip_eps_high, dual_clip=algo.dual_clip)
    return loss, dict(ratio=aux["ratio"], clip_low=aux["clip_low"], clip_high=aux["clip_high"],
                      dual_clipped=aux["dual_clipped"], selected=_no(loss.shape))


def clip_cov(logp_new_BxT, logp_old_BxT, adv_BxT, mask_BxT, entropy_BxT, algo, key):
    """Clip-Cov: ppo_clip, then a random clip_cov_ratio share of the in-band, unclipped tokens gives no gradient."""
    loss, aux = ppo_clip(logp_new_BxT, logp_old_BxT, adv_BxT, mask_BxT, entropy_BxT, algo, key)
    adv = broadcast_adv(adv_BxT, logp_new_BxT)
    cov = token_covariance(adv, logp_new_BxT, mask_BxT)
    band = mask_BxT & ~(aux["clip_low"] | aux["clip_high"]) & (cov > algo.clip_cov_lb) & (cov < algo.clip_cov_ub)
    selected = first_k(jax.random.uniform(key, cov.shape), band, share_count(algo.clip_cov_ratio, mask_BxT))
    aux["selected"] = selected
    return jnp.where(selected, 0.0, loss), aux


def kl_cov(logp_new_BxT, logp_old_BxT, adv_BxT, mask_BxT, entropy_BxT, algo, key):
    """KL-Cov: -r A on every token (no clip), plus kl_cov_coef |log r| on the top kl_cov_ratio share by covariance."""
    adv = broadcast_adv(adv_BxT, logp_new_BxT)
    lr_BxT = log_ratio(logp_new_BxT, logp_old_BxT)
    ratio = jnp.exp(lr_BxT)
    cov = token_covariance(adv, logp_new_BxT, mask_BxT)
    selected = first_k(cov, mask_BxT, share_count(algo.kl_cov_ratio, mask_BxT))
    loss = -adv * ratio + jnp.where(selected, algo.kl_cov_coef * jnp.abs(lr_BxT), 0.0)
    no = _no(loss.shape)
    return loss, dict(ratio=ratio, clip_low=no, clip_high=no, dual_clipped=no, selected=selected)


def gspo(logp_new_BxT, logp_old_BxT, adv_BxT, mask_BxT, entropy_BxT, algo, key):
    """GSPO: s_i = exp(mean_t log r_t) clipped to [1 - clip_eps_low, 1 + clip_eps_high]; token gradients."""
    adv = broadcast_adv(adv_BxT, logp_new_BxT)
    mask = jnp.asarray(mask_BxT, bool)
    lr_BxT = log_ratio(logp_new_BxT, logp_old_BxT)
    seq_B = jnp.sum(jnp.where(mask, lr_BxT, 0.0), -1) / jnp.maximum(jnp.sum(mask, -1), 1)
    lp = logp_new_BxT.astype(jnp.float32)
    # value: the sequence ratio on every token; gradient: d log p_t, scaled by that ratio (GSPO-token form)
    log_s = jnp.minimum(jax.lax.stop_gradient(seq_B)[:, None] + lp - jax.lax.stop_gradient(lp), MAX_LOG_RATIO)
    s = jnp.exp(log_s)
    lo, hi = 1.0 - algo.clip_eps_low, 1.0 + algo.clip_eps_high
    loss = jnp.maximum(-adv * s, -adv * jnp.clip(s, lo, hi))
    clip_low, clip_high = (adv < 0) & (s < lo), (adv > 0) & (s > hi)
    return loss, dict(ratio=s, clip_low=clip_low, clip_high=clip_high, dual_clipped=_no(loss.shape),
                      selected=_no(loss.shape))


_LOSSES = dict(ppo_clip=ppo_clip, clip_cov=clip_cov, kl_cov=kl_cov, gspo=gspo)
assert tuple(_LOSSES) == POLICY_LOSSES


def get_policy_loss(name: str):
    """The loss registered under `algo.policy_loss = name`; one clear line otherwise."""
    if name not in _LOSSES:
        raise ValueError(f"config.algo.policy_loss: unknown loss {name!r}; known: {', '.join(POLICY_LOSSES)}")
    return _LOSSES[name]


def needs_key(name: str) -> bool:
    """Whether the loss draws random numbers (the train step passes a fresh key only then)."""
    return name == "clip_cov"


def top_entropy_mask(entropy_BxT, mask_BxT, frac: float):
    """Tokens whose entropy is in the top `frac` of the masked tokens (Wang et al. 2025, arXiv 2506.01939).

    frac = 1 keeps every token. The threshold is the (1 - frac) quantile over the mask (linear interpolation).
    """
    mask = jnp.asarray(mask_BxT, bool)
    if frac >= 1.0:
        return mask
    ent = jax.lax.stop_gradient(entropy_BxT).astype(jnp.float32)
    thresh = jnp.nanquantile(jnp.where(mask, ent, jnp.nan), 1.0 - frac)
    return mask & (ent >= thresh)
