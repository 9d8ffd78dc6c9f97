"""DLC: the tilt equals the explicit formula (both temperature orders, plausibility mask), mu = 0 is
bit-identical to the plain sampler, and empirical frequencies match softmax((z_p - mu z_m) / T)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.config import base_config
from rlvr_jax.models import memory_config
from rlvr_jax.sampling import Sampler, SamplingConfig, dlc_tilt
from tests.sampling.sampler_helpers import (PROMPTS, chi2_pvalue, last_logits, log_softmax, padded, peaky, softmax,
                                            teacher_forced_logits, tiny_cfg)


def explicit(zp, zm, mu, T, order, plausibility=0.0):
    """The paper's formula, written out in numpy."""
    zp, zm = np.asarray(zp, np.float64), np.asarray(zm, np.float64)
    l = (zp - mu * zm) / T if order == "tilt_then_temperature" else zp / T - mu * zm
    if plausibility > 0:
        p = softmax(zp)
        l = np.where(p >= plausibility * p.max(), l, -np.inf)
    return l


@pytest.fixture(scope="module")
def setup():
    policy = peaky(tiny_cfg(), seed=1, scale=2.0)
    memory = peaky(memory_config(policy.cfg, width_ratio=0.5), seed=2, scale=2.0)
    return policy, memory, Sampler()


@pytest.mark.parametrize("order", ["tilt_then_temperature", "temperature_then_tilt"])
def test_tilt_function_equals_formula(order):
    rng = np.random.RandomState(0)
    zp, zm = rng.randn(4, 50) * 2, rng.randn(4, 50) * 2
    cfg = SamplingConfig(temperature=0.7, dlc_mu=0.6, tilt_order=order, plausibility=0.1)
    got = np.asarray(dlc_tilt(jnp.asarray(zp, jnp.float32), jnp.asarray(zm, jnp.float32), cfg))
    for b in range(4):
        ref = explicit(zp[b], zm[b], 0.6, 0.7, order, 0.1)
        np.testing.assert_array_equal(np.isfinite(got[b]), np.isfinite(ref))
        np.testing.assert_allclose(got[b][np.isfinite(ref)], ref[np.isfinite(ref)], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("order,plaus", [("tilt_then_temperature", 0.0), ("temperature_then_tilt", 0.05)])
def test_rollout_logprobs_follow_the_tilt_at_every_step(setup, order, plaus):
    policy, memory, sampler = setup
    cfg = SamplingConfig(max_new_tokens=5, temperature=0.8, num_samples=2, dlc_mu=0.7, tilt_order=order,
                         plausibility=plaus, prompt_buckets=(8,))
    ids, mask = padded(PROMPTS)
    r = sampler(policy, ids, mask, jax.random.key(11), cfg, memory=memory)
    for row in range(r.num_rows):
        resp = np.asarray(r.tokens_BxN[row])
        zp = teacher_forced_logits(policy, PROMPTS[row // 2], resp)
        zm = teacher_forced_logits(memory, PROMPTS[row // 2], resp)
        for t in range(5):
            l = explicit(zp[t], zm[t], 0.7, 0.8, order, plaus)
            assert np.isfinite(l[resp[t]]), "sampled a token outside the plausibility mask"
            np.testing.assert_allclose(float(r.logp_sampler_BxN[row, t]), log_softmax(l)[resp[t]], atol=1e-4)
            np.testing.assert_allclose(float(r.logp_policy_BxN[row, t]), log_softmax(zp[t])[resp[t]], atol=1e-4)


def test_mu_zero_is_bit_identical_to_plain(setup):
    policy, memory, sampler = setup
    cfg = SamplingConfig(max_new_tokens=8, temperature=0.9, top_k=20, num_samples=4, prompt_buckets=(8,))
    ids, mask = padded(PROMPTS)
    plain = sampler(policy, ids, mask, jax.random.key(2), cfg)
    dlc0 = sampler(policy, ids, mask, jax.random.key(2), cfg.replace(dlc_mu=0.0), memory=memory)
    np.testing.assert_array_equal(np.asarray(dlc0.tokens_BxN), np.asarray(plain.tokens_BxN))
    np.testing.assert_array_equal(np.asarray(dlc0.logp_sampler_BxN), np.asarray(plain.logp_sampler_BxN))
    dlc1 = sampler(policy, ids, mask, jax.random.key(2), cfg.replace(dlc_mu=1.0), memory=memory)
    assert not np.array_equal(np.asarray(dlc1.tokens_BxN), np.asarray(plain.tokens_BxN))  # the tilt acts


def test_dlc_token_frequencies_match_formula(setup):
    policy, memory, sampler = setup
    prompt = np.array([5, 17, 42, 9])
    cfg = SamplingConfig(max_new_tokens=1, temperature=0.8, num_samples=6000, dlc_mu=1.0, plausibility=0.02,
                         prompt_buckets=(8,))
    r = sampler(policy, prompt[None], None, jax.random.key(4), cfg, memory=memory)
    tok = np.asarray(r.tokens_BxN[:, 0])
    p = softmax(explicit(last_logits(policy, prompt), last_logits(memory, prompt), 1.0, 0.8,
                         "tilt_then_temperature", 0.02))
    assert (p > 1e-3).sum() >= 3
    assert chi2_pvalue(np.bincount(tok, minlength=len(p)), p) > 1e-3
    plain = softmax(last_logits(policy, prompt) / 0.8)
    assert chi2_pvalue(np.bincount(tok, minlength=len(p)), plain) < 1e-6  # and it is not the plain policy


def test_from_config_and_errors(setup):
    cfg = base_config()
    sc = SamplingConfig.from_config(cfg, stop_token_ids=[2], pad_id=0)
    assert sc.dlc_mu == 0.0 and sc.num_samples == cfg.rollout.group_size and sc.stop_token_ids == (2,)
    assert sc.prompt_buckets[0] == 16 and sc.max_new_tokens == cfg.rollout.max_new_tokens
    cfg.memory.enabled, cfg.memory.mu, cfg.memory.tilt_order = True, 0.3, "temperature_then_tilt"
    sc = SamplingConfig.from_config(cfg)
    assert sc.dlc_mu == 0.3 and sc.tilt_order == "temperature_then_tilt"
    with pytest.raises(ValueError, match="SamplingConfig.top_p"):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ValueError, match="SamplingConfig.tilt_order"):
        SamplingConfig(tilt_order="sideways")
    policy, _, sampler = setup
    other = peaky(tiny_cfg(vocab_size=64), seed=0)
    with pytest.raises(ValueError, match="vocab_size"):
        sampler(policy, np.array([[1, 2]]), None, jax.random.key(0), SamplingConfig(prompt_buckets=(8,)), memory=other)
