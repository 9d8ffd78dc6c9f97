"""Sampling rules: log-probs equal an independent numpy version; empirical frequencies over many
draws (one prompt, 1-token responses, thousands of rows in one batch) match the intended distribution."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.sampling import Sampler, SamplingConfig
from rlvr_jax.sampling import next_token as rules
from tests.sampling.sampler_helpers import (chi2_pvalue, last_logits, log_softmax, peaky, ref_logits, softmax,
                                            tiny_cfg)

RULES = [dict(temperature=0.5), dict(temperature=1.0, top_k=5), dict(temperature=1.3, top_p=0.7),
         dict(temperature=1.0, min_p=0.05), dict(temperature=0.8, top_k=20, top_p=0.9, min_p=0.02)]


@pytest.fixture(scope="module")
def setup():
    model = peaky(tiny_cfg(), seed=3)
    prompt = np.array([5, 17, 42, 9])
    return model, prompt, last_logits(model, prompt), Sampler()


@pytest.mark.parametrize("kw", [dict(temperature=1.0)] + RULES)
def test_rule_logits_match_numpy(kw):
    z = np.random.RandomState(0).randn(3, 200) * 3
    z[1, :50] = z[1, 0]  # ties
    cfg = SamplingConfig(**kw)
    got = np.asarray(rules.sampling_logits(jnp.asarray(z, jnp.float32), None, cfg))
    for b in range(3):
        ref = ref_logits(z[b], kw["temperature"], kw.get("top_k", 0), kw.get("top_p", 1.0), kw.get("min_p", 0.0))
        np.testing.assert_array_equal(np.isfinite(got[b]), np.isfinite(ref))
        np.testing.assert_allclose(log_softmax(got[b])[np.isfinite(ref)], log_softmax(ref)[np.isfinite(ref)],
                                   atol=1e-5)


def test_rules_off_are_identity_and_greedy_is_argmax():
    z = jnp.asarray(np.random.RandomState(1).randn(4, 300), jnp.float32)
    assert rules.sampling_logits(z, None, SamplingConfig()) is not None
    np.testing.assert_array_equal(rules.sampling_logits(z, None, SamplingConfig()), z)
    tok, lps, lpp = rules.sample_step(jax.random.key(0), z, None, SamplingConfig(temperature=0.0))
    np.testing.assert_array_equal(tok, np.argmax(z, -1))
    np.testing.assert_array_equal(lps, 0.0)
    np.testing.assert_allclose(lpp, jax.nn.log_softmax(z)[np.arange(4), tok], atol=1e-6)


@pytest.mark.parametrize("V", [1000, 256, 7])
def test_draw_frequencies_and_logp(V):
    """The inverse-CDF draw (V not a multiple of the block too) matches softmax; -inf tokens never drawn."""
    rng = np.random.RandomState(V)
    z = rng.randn(V) * 2
    z[rng.rand(V) < 0.3] = -np.inf
    z[0] = 1.0
    n = 40000
    logits = jnp.broadcast_to(jnp.asarray(z, jnp.float32), (n, V))
    tok, logp = jax.jit(rules.draw)(jax.random.key(V), logits)
    tok, logp = np.asarray(tok), np.asarray(logp)
    p = softmax(z)
    assert chi2_pvalue(np.bincount(tok, minlength=V), p) > 1e-3
    np.testing.assert_allclose(logp, np.log(p[tok]), atol=1e-5)


# top-k alone and min-p alone are also inside the combined rule (and unit-tested above): slow only.
@pytest.mark.parametrize("kw", [pytest.param(kw, marks=pytest.mark.slow) if i in (1, 3) else kw
                                for i, kw in enumerate(RULES)])
def test_sampler_token_frequencies_match_rule(setup, kw):
    model, prompt, z, sampler = setup
    n = 6000
    cfg = SamplingConfig(max_new_tokens=1, num_samples=n, prompt_buckets=(8,), **kw)
    r = sampler(model, prompt[None], None, jax.random.key(7), cfg)
    tok = np.asarray(r.tokens_BxN[:, 0])
    ref = ref_logits(z, kw["temperature"], kw.get("top_k", 0), kw.get("top_p", 1.0), kw.get("min_p", 0.0))
    p = softmax(ref)
    assert (p > 1e-3).sum() >= 3, "the test model is too peaky for this rule to be checked"
    assert chi2_pvalue(np.bincount(tok, minlength=len(p)), p) > 1e-3
    # the recorded sampler log-probs are those of the intended distribution, the policy ones at T = 1
    np.testing.assert_allclose(np.asarray(r.logp_sampler_BxN[:, 0]), log_softmax(ref)[tok], atol=1e-4)
    np.testing.assert_allclose(np.asarray(r.logp_policy_BxN[:, 0]), log_softmax(z)[tok], atol=1e-4)


def test_frequency_check_has_power(setup):
    """The same check rejects samples at T = 0.5 against the T = 0.7 distribution (the test can fail)."""
    model, prompt, z, sampler = setup
    cfg = SamplingConfig(max_new_tokens=1, num_samples=6000, temperature=0.5, prompt_buckets=(8,))
    tok = np.asarray(sampler(model, prompt[None], None, jax.random.key(7), cfg).tokens_BxN[:, 0])
    counts = np.bincount(tok, minlength=len(z))
    assert chi2_pvalue(counts, softmax(z / 0.7)) < 1e-6
