"""How the next token is chosen: pure functions on float32 logits (DLC tilt, temperature, top-k/p, min-p, draw).

Every rule maps logits to logits (excluded tokens get -inf), so the sampling distribution is
always `softmax(final_logits)` and its log-probabilities are exact. Rules that are off are not
compiled in (they are static switches of `SamplingConfig`): with top_p = 1 and top_k = 0 the
vocabulary is never sorted.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rlvr_jax.sampling.config import SamplingConfig

EXCLUDED = -jnp.inf


def dlc_tilt(z_policy_BxV, z_memory_BxV, cfg: SamplingConfig):
    """DLC: (z_policy - mu z_memory) / T, or z_policy / T - mu z_memory; T = 1 when greedy.

    With plausibility > 0, tokens with p_policy < plausibility * max p_policy (temperature 1) are
    excluded, so the tilt can only re-rank continuations the policy finds plausible.
    """
    zp = z_policy_BxV.astype(jnp.float32)
    zm = z_memory_BxV.astype(jnp.float32)
    t = 1.0 if cfg.greedy else cfg.temperature
    if cfg.tilt_order == "tilt_then_temperature":
        logits = (zp - cfg.dlc_mu * zm) / t
    else:
        logits = zp / t - cfg.dlc_mu * zm
    if cfg.plausibility > 0:
        keep = zp >= jnp.max(zp, axis=-1, keepdims=True) + math.log(cfg.plausibility)
        logits = jnp.where(keep, logits, EXCLUDED)
    return logits


def temperature(logits_BxV, t: float):
    """logits / t (t = 0, greedy, leaves them unchanged: the argmax is the same)."""
    return logits_BxV if t in (0, 1) else logits_BxV / t


def top_k(logits_BxV, k: int):
    """Keeps the k largest logits (ties at the k-th value are all kept)."""
    if k <= 0 or k >= logits_BxV.shape[-1]:
        return logits_BxV
    kth_Bx1 = jax.lax.top_k(logits_BxV, k)[0][:, -1:]
    return jnp.where(logits_BxV >= kth_Bx1, logits_BxV, EXCLUDED)


def top_p(logits_BxV, p: float):
    """Nucleus: keeps the smallest set of most likely tokens whose mass reaches p (always the top one)."""
    if p >= 1:
        return logits_BxV
    sorted_BxV = -jnp.sort(-logits_BxV, axis=-1)
    probs = jax.nn.softmax(sorted_BxV, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    n_keep_B = jnp.maximum(jnp.sum(mass_before < p, axis=-1), 1)
    cutoff_Bx1 = jnp.take_along_axis(sorted_BxV, (n_keep_B - 1)[:, None], axis=-1)
    return jnp.where(logits_BxV >= cutoff_Bx1, logits_BxV, EXCLUDED)


def min_p(logits_BxV, p: float):
    """Drops tokens whose probability is below p times the most likely token's."""
    if p <= 0:
        return logits_BxV
    floor_Bx1 = jnp.max(logits_BxV, axis=-1, keepdims=True) + math.log(p)
    return jnp.where(logits_BxV >= floor_Bx1, logits_BxV, EXCLUDED)


def sampling_logits(z_policy_BxV, z_memory_BxV, cfg: SamplingConfig):
    """The logits whose softmax is the distribution tokens are drawn from (HF order: T, top-k, top-p, min-p)."""
    if z_memory_BxV is not None:
        logits = dlc_tilt(z_policy_BxV, z_memory_BxV, cfg)
    else:
        logits = temperature(z_policy_BxV.astype(jnp.float32), cfg.temperature)
    logits = top_k(logits, cfg.top_k)
    logits = top_p(logits, cfg.top_p)
    return min_p(logits, cfg.min_p)


def is_identity(cfg: SamplingConfig, with_memory: bool) -> bool:
    """True when the sampling distribution is the policy at temperature 1 (logp_sampler = logp_policy)."""
    return (not with_memory and cfg.temperature == 1 and cfg.top_k == 0 and cfg.top_p >= 1
            and cfg.min_p <= 0)


def _logp_at(logits_BxV, token_B):
    """log softmax(logits)[token] without materialising the full log-softmax."""
    lse_B = jax.nn.logsumexp(logits_BxV, axis=-1)
    return jnp.take_along_axis(logits_BxV, token_B[:, None], axis=-1)[:, 0] - lse_B


def _last_positive(x_BxK):
    """Index of the last entry > 0 along the last axis (0 if none)."""
    K = x_BxK.shape[-1]
    return K - 1 - jnp.argmax((x_BxK > 0)[..., ::-1], axis=-1)


def row_keys(key, rows):
    """One key per row: row r of a call draws from fold_in(key, r), whichever engine serves it.

    rows: the number of rows (keys of rows 0..rows-1) or the row indices [A] wanted.
    """
    idx = jnp.arange(rows, dtype=jnp.int32) if isinstance(rows, int) else jnp.asarray(rows, jnp.int32)
    return jax.vmap(lambda r: jax.random.fold_in(key, r))(idx)


def step_keys(row_keys_B, step_B):
    """The keys of one token per row: fold_in(row key, index of the token in its response)."""
    step_B = jnp.broadcast_to(jnp.asarray(step_B, jnp.int32), row_keys_B.shape)
    return jax.vmap(jax.random.fold_in)(row_keys_B, step_B)


def _uniforms(key, B: int):
    """B uniforms in [0, 1): one per row from a batch of keys [B], or B from one key."""
    if jnp.ndim(key) == 0:
        return jax.random.uniform(key, (B,), jnp.float32)
    return jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32))(key)


def draw(key, logits_BxV, block: int = 256):
    """Draws one token per row from softmax(logits) by inverse CDF with ONE uniform per row.

    key: one key, or one per row [B] (`step_keys`: then a row's draw depends on its own key only, so
    the static sampler and the continuous engine, which batch rows differently, draw the same token).

    Two levels (block sums, then one block) so no length-V cumsum or BxV random numbers are
    needed: on CPU this is ~50x cheaper than Gumbel-max (`jax.random.categorical`) at V = 49152.
    Exact up to float32 rounding of the sums; tokens of probability 0 are never drawn.
    Returns (token_B, log-prob of the token under softmax(logits)).
    """
    B, V = logits_BxV.shape
    blk = min(block, V)
    nb = -(-V // blk)
    m_Bx1 = jnp.max(logits_BxV, axis=-1, keepdims=True)
    p_BxV = jnp.exp(logits_BxV - m_Bx1)
    if nb * blk != V:
        p_BxV = jnp.pad(p_BxV, ((0, 0), (0, nb * blk - V)))
    p_BxNxK = p_BxV.reshape(B, nb, blk)
    bsum_BxN = p_BxNxK.sum(-1)
    bcum_BxN = jnp.cumsum(bsum_BxN, axis=-1)
    total_B = bcum_BxN[:, -1]
    u_B = _uniforms(key, B) * total_B
    bi_B = jnp.minimum(jnp.sum(bcum_BxN <= u_B[:, None], axis=-1), _last_positive(bsum_BxN))
    before_B = jnp.take_along_axis(bcum_BxN - bsum_BxN, bi_B[:, None], axis=-1)[:, 0]
    pb_BxK = jnp.take_along_axis(p_BxNxK, bi_B[:, None, None], axis=1)[:, 0]
    t_B = jnp.maximum(u_B - before_B, 0.0)
    j_B = jnp.minimum(jnp.sum(jnp.cumsum(pb_BxK, axis=-1) <= t_B[:, None], axis=-1), _last_positive(pb_BxK))
    token_B = (bi_B * blk + j_B).astype(jnp.int32)
    picked_B = jnp.take_along_axis(logits_BxV, token_B[:, None], axis=-1)[:, 0]
    logp_B = picked_B - m_Bx1[:, 0] - jnp.log(total_B)
    return token_B, logp_B


def sample_step(key, z_policy_BxV, z_memory_BxV, cfg: SamplingConfig):
    """One token per row: (token_B, logp_sampler_B, logp_policy_B); key: one, or one per row (`draw`).

    logp_sampler is under the distribution actually sampled (0 when greedy: a point mass);
    logp_policy is log_softmax(z_policy) at temperature 1, what the trainer recomputes.
    The key is used the same way with and without a memory network, so mu = 0 reproduces
    the plain sampler bit for bit.
    """
    z_policy_BxV = z_policy_BxV.astype(jnp.float32)
    logits = sampling_logits(z_policy_BxV, z_memory_BxV, cfg)
    if cfg.greedy:
        token_B = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        logp_sampler_B = jnp.zeros(token_B.shape, jnp.float32)
    else:
        token_B, logp_sampler_B = draw(key, logits)
    if is_identity(cfg, z_memory_BxV is not None) and not cfg.greedy:
        logp_policy_B = logp_sampler_B
    else:
        logp_policy_B = _logp_at(z_policy_BxV, token_B)
    return token_B, logp_sampler_B, logp_policy_B
