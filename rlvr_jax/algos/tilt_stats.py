"""Diagnostics of the DLC tilt softmax(z - mu * zm): how far the memory is from the policy and what the tilt does.

Per response token, under p = softmax(z) (policy) and m = softmax(zm) (memory), all exact over the vocabulary:
  memory_kl      KL(p || m)
  tilt_slope     s = Cov_p(z, z - mu zm) / Var_p(z): the slope of the tilted logits on the policy's. When the
                 memory equals the policy up to a constant the tilt is plain temperature 1 / (1 - mu), s = 1 - mu.
                 A token where the policy is (numerically) certain, Var_p(z) = 0, counts as s = 1 (no tilt seen).
  tilt_entropy   entropy of softmax(z - mu zm)
  memory_lag_ce  -log m(token) + log p(token) of the sampled token: how far the memory lags the policy on
                 what the policy just sampled
Token means over the response mask; `tilt_temperature` = 1 / mean s, the temperature a plain
temperature-scaled sampler would need to match the mean slope (inf at s = 0, negative when the tilt
reverses the policy's order).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

TOKEN_KEYS = ("memory_kl", "tilt_slope", "tilt_entropy", "memory_lag_ce")
_VAR_EPS = 1e-12


def tilt_token_stats(z_BxTxV, zm_BxTxV, tokens_BxT, mu: float) -> dict:
    """Per-token diagnostics `[B, T]` (float32) of the tilt softmax(z - mu zm); see the module doc."""
    z = z_BxTxV.astype(jnp.float32)
    zm = zm_BxTxV.astype(jnp.float32)
    logp = jax.nn.log_softmax(z, axis=-1)
    logm = jax.nn.log_softmax(zm, axis=-1)
    p = jnp.exp(logp)
    dz = z - jnp.sum(p * z, -1, keepdims=True)
    dzm = zm - jnp.sum(p * zm, -1, keepdims=True)
    var = jnp.sum(p * dz * dz, -1)
    cov = jnp.sum(p * dz * dzm, -1)
    slope = 1.0 - mu * cov / jnp.maximum(var, _VAR_EPS)
    logq = jax.nn.log_softmax(z - mu * zm, axis=-1)
    tok = tokens_BxT[..., None].astype(jnp.int32)
    lag = jnp.take_along_axis(logp - logm, tok, axis=-1)[..., 0]
    return dict(memory_kl=jnp.sum(p * (logp - logm), -1), tilt_slope=slope,
                tilt_entropy=-jnp.sum(jnp.exp(logq) * logq, -1), memory_lag_ce=lag)


def masked_sums(per_token: dict, mask_BxT) -> dict:
    """Sums of each per-token stat over the mask, and the token count (`tokens`): add up over chunks exactly."""
    m = jnp.asarray(mask_BxT).astype(bool)
    out = {k: jnp.sum(jnp.where(m, v, 0.0)) for k, v in per_token.items()}
    out["tokens"] = jnp.sum(m).astype(jnp.float32)
    return out


def tilt_means(sums: dict) -> dict:
    """Token means from `masked_sums`, plus tilt_temperature = 1 / mean slope (no tokens: means 0, temperature inf)."""
    n = jnp.maximum(sums["tokens"], 1.0)
    out = {k: sums[k] / n for k in TOKEN_KEYS}
    out["tilt_temperature"] = 1.0 / out["tilt_slope"]
    return out


def tilt_stats(z_BxTxV, zm_BxTxV, tokens_BxT, mask_BxT, mu: float) -> dict:
    """Token means over `mask_BxT` of the tilt diagnostics (module doc), and tilt_temperature."""
    return tilt_means(masked_sums(tilt_token_stats(z_BxTxV, zm_BxTxV, tokens_BxT, mu), mask_BxT))
