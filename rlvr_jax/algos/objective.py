"""The policy objective, top to bottom: clipped surrogate, aggregation, KL to a reference, entropy bonus.

    loss = agg(pg_loss) + kl_coef * agg(KL_k(pi || pi_ref)) - entropy_coef * agg(entropy)

all three aggregated with the same `algo.loss_agg` over the response-token mask. With
`algo.kl_coef = 0` no reference logprobs are needed (pass None: no reference model is held).
"""
from __future__ import annotations

import jax.numpy as jnp

from rlvr_jax.algos.aggregation import aggregate, aggregate_parts
from rlvr_jax.algos.groups import masked_mean
from rlvr_jax.algos.kl import kl_per_token
from rlvr_jax.algos.losses import clipped_pg_loss


def norm_tokens_of(algo, default: int | None, mask_BxT) -> int:
    """Token budget of seq_mean_token_sum_norm: algo.loss_norm_tokens, else `default`, else T."""
    if algo.loss_norm_tokens > 0:
        return int(algo.loss_norm_tokens)
    return int(default) if default else int(mask_BxT.shape[-1])


def policy_objective(logp_new_BxT, logp_old_BxT, logp_sampler_BxT, logp_ref_BxT, entropy_BxT, adv_B, mask_BxT,
                     algo_cfg, *, max_new_tokens: int | None = None):
    """Scalar policy loss and its metrics (fractions and means are over the response-token mask).

    adv_B: one advantage per sequence (or [B, T]); logp_sampler_BxT may be None when algo.tis_cap = 0,
    logp_ref_BxT when algo.kl_coef = 0, entropy_BxT when algo.entropy_coef = 0.
    max_new_tokens: the budget for seq_mean_token_sum_norm when algo.loss_norm_tokens = 0
    (pass cfg.rollout.max_new_tokens; None falls back to T).
    Metrics (kl and entropy as token means, whatever the aggregation): pg_loss, clip_frac_low,
    clip_frac_high, dual_clip_frac, kl, entropy, ratio_mean, tis_frac_capped, tis_weight_mean, and
    agg_denominator: every term is sum / agg_denominator, so micro-batch losses weighted by their
    agg_denominator and divided by the summed weights give the full-batch loss exactly.
    """
    algo = algo_cfg
    mask = jnp.asarray(mask_BxT).astype(bool)
    norm = norm_tokens_of(algo, max_new_tokens, mask)
    agg = lambda x: aggregate(x, mask, algo.loss_agg, norm)  # noqa: E731

    pg_BxT, aux = clipped_pg_loss(logp_new_BxT, logp_old_BxT, adv_B, eps_low=algo.clip_eps_low,
                                  eps_high=algo.clip_eps_high, dual_clip=algo.dual_clip,
                                  logp_sampler_BxT=logp_sampler_BxT, tis_cap=algo.tis_cap)
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
    if algo.entropy_coef > 0 and entropy_BxT is None:
        raise ValueError("config.algo.entropy_coef: > 0 needs the per-token entropy (entropy_BxT)")
    if entropy_BxT is not None:
        entropy_BxT = entropy_BxT.astype(jnp.float32)
        entropy = masked_mean(entropy_BxT, mask)
        if algo.entropy_coef > 0:
            loss = loss - algo.entropy_coef * agg(entropy_BxT)

    frac = lambda b: masked_mean(b.astype(jnp.float32), mask)  # noqa: E731
    metrics = dict(pg_loss=pg_loss, clip_frac_low=frac(aux["clip_low"]), clip_frac_high=frac(aux["clip_high"]),
                   dual_clip_frac=frac(aux["dual_clipped"]), kl=kl, entropy=entropy,
                   ratio_mean=masked_mean(aux["ratio"], mask), tis_frac_capped=frac(aux["tis_capped"]),
                   tis_weight_mean=masked_mean(aux["tis_weight"], mask),
                   agg_denominator=aggregate_parts(jnp.zeros(mask.shape), mask, algo.loss_agg, norm)[1])
    return loss, metrics
