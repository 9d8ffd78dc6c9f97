"""The policy objective, top to bottom: per-token policy loss, aggregation, KL to a reference, entropy bonus.

    loss = agg(keep * tis * pg_loss) + kl_coef * agg(KL_k(pi || pi_ref)) - entropy_coef * agg(entropy)

all three aggregated with the same `algo.loss_agg` over the response-token mask. pg_loss is the
`algo.policy_loss` of `policy_losses.py` (the one seam every token-level method plugs into), tis the truncated
importance weight (`algo.tis_cap`), keep the high-entropy token selection (`algo.entropy_top_frac`). With
`algo.entropy_target > 0` the entropy coefficient is adaptive (Skywork-OR1, arXiv 2505.22312): the train state
carries it, the bonus acts only while the entropy is below the target, and `adapt_entropy_coef` moves it by
`algo.entropy_coef_delta` toward the target after each update. With `algo.kl_coef = 0` no reference logprobs
are needed (pass None: no reference model is held).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rlvr_jax.algos.aggregation import aggregate, aggregate_parts
from rlvr_jax.algos.groups import masked_mean
from rlvr_jax.algos.kl import kl_per_token
from rlvr_jax.algos.losses import truncated_is_weight
from rlvr_jax.algos.policy_losses import get_policy_loss, needs_key, top_entropy_mask


def norm_tokens_of(algo, default: int | None, mask_BxT) -> int:
    """Token budget of seq_mean_token_sum_norm: algo.loss_norm_tokens, else `default`, else T."""
    if algo.loss_norm_tokens > 0:
        return int(algo.loss_norm_tokens)
    return int(default) if default else int(mask_BxT.shape[-1])


def needs_entropy(algo) -> bool:
    """Whether the objective reads the per-token entropy (bonus, adaptive bonus or high-entropy selection)."""
    return algo.entropy_coef > 0 or algo.entropy_target > 0 or algo.entropy_top_frac < 1


def adapt_entropy_coef(coef, entropy, algo):
    """Skywork-OR1's update: coef + delta while the entropy is below algo.entropy_target, else - delta; >= 0."""
    step = jnp.where(entropy < algo.entropy_target, algo.entropy_coef_delta, -algo.entropy_coef_delta)
    return jnp.maximum(coef + step, 0.0).astype(jnp.float32)


def policy_objective(logp_new_BxT, logp_old_BxT, logp_sampler_BxT, logp_ref_BxT, entropy_BxT, adv_B, mask_BxT,
                     algo_cfg, *, max_new_tokens: int | None = None, key=None, entropy_coef=None):
    """Scalar policy loss and its metrics (fractions and means are over the response-token mask).

    adv_B: one advantage per sequence (or [B, T]); logp_sampler_BxT may be None when algo.tis_cap = 0,
    logp_ref_BxT when algo.kl_coef = 0, entropy_BxT when algo.entropy_coef = 0.
    max_new_tokens: the budget for seq_mean_token_sum_norm when algo.loss_norm_tokens = 0
    (pass cfg.rollout.max_new_tokens; None falls back to T). key: a PRNG key, needed by a policy loss that
    draws (clip_cov). entropy_coef: the adaptive coefficient (a scalar array; None reads algo.entropy_coef).
    Metrics (kl and entropy as token means, whatever the aggregation): pg_loss, clip_frac_low,
    clip_frac_high, dual_clip_frac, kl, entropy, ratio_mean, tis_frac_capped, tis_weight_mean, logp_gap, and
    agg_denominator: every term is sum / agg_denominator, so micro-batch losses weighted by their
    agg_denominator and divided by the summed weights give the full-batch loss exactly.
    """
    algo = algo_cfg
    mask = jnp.asarray(mask_BxT).astype(bool)
    norm = norm_tokens_of(algo, max_new_tokens, mask)
    agg = lambda x: aggregate(x, mask, algo.loss_agg, norm)  # noqa: E731

    if needs_key(algo.policy_loss) and key is None:
        raise ValueError(f"config.algo.policy_loss: {algo.policy_loss!r} draws tokens at random and needs a key")
    if needs_entropy(algo) and entropy_BxT is None:
        raise ValueError("config.algo: entropy_coef, entropy_target and entropy_top_frac need the per-token entropy "
                         "(entropy_BxT)")
    pg_BxT, aux = get_policy_loss(algo.policy_loss)(logp_new_BxT, logp_old_BxT, adv_B, mask, entropy_BxT, algo, key)
    tis_weight, tis_capped = truncated_is_weight(logp_old_BxT, logp_sampler_BxT, algo.tis_cap, pg_BxT.shape)
    if algo.tis_cap:
        pg_BxT = pg_BxT * tis_weight
    extra = {}
    if algo.entropy_top_frac < 1:
        keep = top_entropy_mask(entropy_BxT, mask, algo.entropy_top_frac)
        pg_BxT = jnp.where(keep, pg_BxT, 0.0)
        extra["entropy_kept_frac"] = masked_mean(keep.astype(jnp.float32), mask)
    if algo.policy_loss in ("clip_cov", "kl_cov"):
        extra["cov_frac"] = masked_mean(aux["selected"].astype(jnp.float32), mask)
    pg_loss = agg(pg_BxT)
    loss = pg_loss

    zero = jnp.zeros((), jnp.float32)
    kl = zero
    if algo.kl_coef > 0 and logp_ref_BxT is None:
        raise ValueError("config.algo.kl_coef: > 0 needs the reference policy's logprobs (logp_ref_BxT)")
    if logp_ref_BxT is not None:
        kl_BxT = kl_per_token(logp_new_BxT, logp_ref_BxT, algo.kl_estimator)
        kl = masked_mean(kl_BxT, mask)
        if algo.kl_coef > 0:
            loss = loss + algo.kl_coef * agg(kl_BxT)

    entropy = zero
    if entropy_BxT is not None:
        entropy_BxT = entropy_BxT.astype(jnp.float32)
        entropy = masked_mean(entropy_BxT, mask)
        if algo.entropy_target > 0:  # adaptive: the bonus acts only while the entropy is below the target
            coef = algo.entropy_coef if entropy_coef is None else entropy_coef
            on = jax.lax.stop_gradient(entropy) < algo.entropy_target
            loss = loss - jnp.where(on, coef, 0.0) * agg(entropy_BxT)
        elif algo.entropy_coef > 0:
            loss = loss - algo.entropy_coef * agg(entropy_BxT)

    frac = lambda b: masked_mean(b.astype(jnp.float32), mask)  # noqa: E731
    metrics = dict(pg_loss=pg_loss, clip_frac_low=frac(aux["clip_low"]), clip_frac_high=frac(aux["clip_high"]),
                   dual_clip_frac=frac(aux["dual_clipped"]), kl=kl, entropy=entropy,
                   ratio_mean=masked_mean(aux["ratio"], mask), tis_frac_capped=frac(tis_capped),
                   tis_weight_mean=masked_mean(tis_weight, mask), **extra,
                   # the sampler's logprobs (logp_old: its forward of the policy at T=1) against the trainer's,
                   # token mean of |difference|: float error on each batch's first update, the policy's drift after
                   logp_gap=masked_mean(jnp.abs(jax.lax.stop_gradient(logp_new_BxT) - logp_old_BxT), mask),
                   agg_denominator=aggregate_parts(jnp.zeros(mask.shape), mask, algo.loss_agg, norm)[1])
    return loss, metrics
