"""Tilt diagnostics: against a numpy reference, the exact cases (memory = policy + const, mu = 0), and the
train step's metrics (tilt stats with memory on, sampling_entropy always)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlvr_jax.algos.tilt_stats import TOKEN_KEYS, tilt_stats
from rlvr_jax.config import base_config
from rlvr_jax.models import create, memory_config, tiny
from rlvr_jax.train.state import init_state
from rlvr_jax.train.step import make_train_step

B, T, V = 3, 5, 11


def _logits(seed, scale=2.0):
    return np.random.default_rng(seed).normal(size=(B, T, V)).astype(np.float64) * scale


def _tokens_mask(seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (B, T)), rng.random((B, T)) < 0.7


def _reference(z, zm, tokens, mask, mu):
    """Plain numpy, float64, one token at a time."""
    kl, s, ent, lag = [], [], [], []
    for b in range(B):
        for t in range(T):
            if not mask[b, t]:
                continue
            p = np.exp(z[b, t] - z[b, t].max())
            p /= p.sum()
            m = np.exp(zm[b, t] - zm[b, t].max())
            m /= m.sum()
            y = z[b, t] - mu * zm[b, t]
            q = np.exp(y - y.max())
            q /= q.sum()
            ez = p @ z[b, t]
            cov = p @ ((z[b, t] - ez) * (y - p @ y))
            var = p @ ((z[b, t] - ez) ** 2)
            kl.append(p @ (np.log(p) - np.log(m)))
            s.append(cov / var)
            ent.append(-q @ np.log(q))
            lag.append(-np.log(m[tokens[b, t]]) + np.log(p[tokens[b, t]]))
    return dict(memory_kl=np.mean(kl), tilt_slope=np.mean(s), tilt_entropy=np.mean(ent), memory_lag_ce=np.mean(lag),
                tilt_temperature=1 / np.mean(s))


def _ours(z, zm, tokens, mask, mu):
    out = tilt_stats(jnp.asarray(z, jnp.float32), jnp.asarray(zm, jnp.float32), jnp.asarray(tokens),
                     jnp.asarray(mask), mu)
    return {k: float(v) for k, v in out.items()}


def test_against_numpy_reference():
    z, zm = _logits(0), _logits(1)
    tokens, mask = _tokens_mask(2)
    for mu in (0.3, 1.5):
        ours, ref = _ours(z, zm, tokens, mask, mu), _reference(z, zm, tokens, mask, mu)
        assert set(ours) == set(ref)
        for k in ref:
            np.testing.assert_allclose(ours[k], ref[k], rtol=2e-5, atol=2e-6, err_msg=f"{k} mu={mu}")


def test_memory_equal_to_policy_up_to_a_constant_is_plain_temperature():
    z = _logits(3)
    tokens, mask = _tokens_mask(4)
    mu = 0.4
    out = _ours(z, z + 7.0, tokens, mask, mu)
    np.testing.assert_allclose(out["tilt_slope"], 1 - mu, rtol=1e-5)
    np.testing.assert_allclose(out["tilt_temperature"], 1 / (1 - mu), rtol=1e-5)
    assert abs(out["memory_kl"]) < 1e-5 and abs(out["memory_lag_ce"]) < 1e-5
    # the tilt is temperature 1 / (1 - mu): its entropy is that of softmax((1 - mu) z)
    ref = _reference(z * (1 - mu), z * (1 - mu), tokens, mask, 0.0)
    np.testing.assert_allclose(out["tilt_entropy"], ref["tilt_entropy"], rtol=1e-5)


def test_mu_zero_tilt_entropy_is_the_policy_entropy():
    z, zm = _logits(5), _logits(6)
    tokens, mask = _tokens_mask(7)
    out = _ours(z, zm, tokens, mask, 0.0)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ent = -(p * np.log(p)).sum(-1)
    np.testing.assert_allclose(out["tilt_entropy"], ent[mask].mean(), rtol=1e-5)
    np.testing.assert_allclose(out["tilt_slope"], 1.0, rtol=1e-6)
    assert out["memory_kl"] > 0


def _step_metrics(memory_on):
    P, N, G, Bt = 4, 6, 2, 4
    cfg = base_config()
    cfg.rollout.max_new_tokens, cfg.rollout.group_size = N, G
    cfg.memory.enabled = memory_on
    cfg.algo.logprob_chunk = 4  # two sequence chunks of the N = 6 response positions
    rng = np.random.default_rng(0)
    pcfg = tiny("qwen2", vocab_size=96, num_layers=1)
    policy = create(pcfg, seed=0)
    memory = create(memory_config(pcfg, width_ratio=0.5, num_layers=1), seed=1) if memory_on else None
    state, pg, mg = init_state(policy, memory, optax.sgd(0.1), optax.sgd(0.1), seed=0, keep_reference=False)
    mask = np.arange(N)[None] < rng.integers(2, N + 1, Bt)[:, None]
    batch = dict(prompt_BxP=jnp.asarray(np.repeat(rng.integers(1, 96, (Bt // G, P)), G, 0), jnp.int32),
                 prompt_mask_BxP=jnp.ones((Bt, P), bool),
                 response_BxN=jnp.asarray(rng.integers(1, 96, (Bt, N)), jnp.int32), mask_BxN=jnp.asarray(mask),
                 adv_B=jnp.asarray(rng.normal(size=Bt), jnp.float32),
                 logp_old_BxN=jnp.asarray(-rng.uniform(3, 6, (Bt, N)), jnp.float32),
                 logp_sampler_BxN=jnp.asarray(-rng.uniform(1, 6, (Bt, N)), jnp.float32),
                 success_B=jnp.ones(Bt, bool), valid_B=jnp.asarray([True, True, True, False]))
    step = make_train_step(pg, mg, cfg, optax.sgd(0.1), optax.sgd(0.1))
    _, met = jax.jit(step)(state, batch)
    return met, batch, (policy, memory)


def test_train_step_reports_sampling_entropy_and_tilt_stats():
    met, batch, _ = _step_metrics(False)
    assert not set(TOKEN_KEYS) & set(met)
    mask = np.asarray(batch["mask_BxN"]) & np.asarray(batch["valid_B"])[:, None]
    np.testing.assert_allclose(float(met["sampling_entropy"]), -np.asarray(batch["logp_sampler_BxN"])[mask].mean(),
                               rtol=1e-6)
    met, batch, (policy, memory) = _step_metrics(True)
    mask = np.asarray(batch["mask_BxN"]) & np.asarray(batch["valid_B"])[:, None]
    assert set(TOKEN_KEYS) | {"tilt_temperature", "sampling_entropy"} <= set(met)
    # the step's stats are those of the full logits of policy and memory over the masked response tokens
    P = batch["prompt_BxP"].shape[1]
    seq = jnp.concatenate([batch["prompt_BxP"], batch["response_BxN"][:, :-1]], 1)
    pos = jnp.broadcast_to(jnp.arange(seq.shape[1]), seq.shape)
    z = policy(seq, pos)[0][:, P - 1:]
    zm = memory(seq, pos)[0][:, P - 1:]
    ref = tilt_stats(z, zm, batch["response_BxN"], mask, base_config().memory.mu)
    for k, v in ref.items():
        np.testing.assert_allclose(float(met[k]), float(v), rtol=1e-4, atol=1e-5, err_msg=k)
