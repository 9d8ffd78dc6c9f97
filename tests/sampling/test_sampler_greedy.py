"""The sampler against brute force: greedy = argmax of the full forward recomputed each step, rollout
log-probs = teacher-forced log-probs, stop-token masking, the truncated flag, buckets and recompiles,
one prefill per prompt, and identical output on 1 and 8 (fake) devices."""
import jax
import numpy as np
import pytest
from flax import nnx

from rlvr_jax import parallel
from rlvr_jax.sampling import Sampler, SamplingConfig, sample_core
from tests.sampling.sampler_helpers import (PROMPTS, log_softmax, padded, peaky, ref_logits, teacher_forced_logits,
                                            tiny_cfg)

G, N = 2, 6


@pytest.fixture(scope="module")
def setup():
    model = peaky(tiny_cfg(), seed=1, scale=2.0)
    greedy = SamplingConfig(max_new_tokens=N, temperature=0.0, num_samples=G, prompt_buckets=(8, 16))
    sampler = Sampler()
    ids, mask = padded(PROMPTS)
    base = sampler(model, ids, mask, jax.random.key(0), greedy)
    return model, greedy, sampler, base


def test_greedy_equals_argmax_of_full_forward(setup):
    model, _, _, r = setup
    tokens = np.asarray(r.tokens_BxN)
    for i, prompt in enumerate(PROMPTS):
        seq = list(prompt)
        for t in range(N):
            nxt = int(np.argmax(teacher_forced_logits(model, seq, [0])[0]))
            assert tokens[i * G, t] == nxt and tokens[i * G + 1, t] == nxt, (i, t)
            seq.append(nxt)
    assert np.asarray(r.mask_BxN).all() and np.asarray(r.truncated_B).all()
    np.testing.assert_array_equal(r.lengths_B, N)
    np.testing.assert_array_equal(r.logp_sampler_BxN, 0.0)  # greedy: a point mass


@pytest.mark.parametrize("kw", [dict(temperature=1.0), dict(temperature=0.7, top_k=10)])
def test_rollout_logprobs_equal_teacher_forced(setup, kw):
    model, _, sampler, _ = setup
    cfg = SamplingConfig(max_new_tokens=N, num_samples=G, prompt_buckets=(8, 16), **kw)
    ids, mask = padded(PROMPTS)
    r = sampler(model, ids, mask, jax.random.key(3), cfg)
    for row in range(len(PROMPTS) * G):
        resp = np.asarray(r.tokens_BxN[row])
        z = teacher_forced_logits(model, PROMPTS[row // G], resp)
        pol = np.array([log_softmax(z[t])[resp[t]] for t in range(N)])
        smp = np.array([log_softmax(ref_logits(z[t], kw["temperature"], kw.get("top_k", 0)))[resp[t]]
                        for t in range(N)])
        np.testing.assert_allclose(np.asarray(r.logp_policy_BxN[row]), pol, atol=1e-4)
        np.testing.assert_allclose(np.asarray(r.logp_sampler_BxN[row]), smp, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(r.prompt_tokens_BxP)[::G, -7:], ids)
    assert r.prompt_tokens_BxP.shape == (len(PROMPTS) * G, 8)


def test_stop_tokens_mask_pad_and_truncated(setup):
    model, greedy, sampler, base = setup
    base_tok = np.asarray(base.tokens_BxN)
    stop = int(base_tok[0, 2])
    cfg = greedy.replace(stop_token_ids=(stop, 127), pad_id=126)
    ids, mask = padded(PROMPTS)
    r = sampler(model, ids, mask, jax.random.key(0), cfg)
    for row in range(base_tok.shape[0]):
        hits = np.nonzero(base_tok[row] == stop)[0]
        n = int(hits[0]) + 1 if len(hits) else N
        assert int(r.lengths_B[row]) == n
        assert bool(r.truncated_B[row]) == (len(hits) == 0)
        np.testing.assert_array_equal(np.asarray(r.mask_BxN[row]), np.arange(N) < n)
        np.testing.assert_array_equal(np.asarray(r.tokens_BxN[row, :n]), base_tok[row, :n])
        np.testing.assert_array_equal(np.asarray(r.tokens_BxN[row, n:]), 126)
        np.testing.assert_array_equal(np.asarray(r.logp_policy_BxN[row, n:]), 0.0)
    assert not bool(r.truncated_B[0]) and int(r.lengths_B[0]) <= 3


def test_buckets_recompile_once_and_padding_is_invisible(setup):
    model, greedy, _, _ = setup
    sampler = Sampler()
    cfg = greedy.replace(max_new_tokens=3)
    outs = []
    for length in (2, 4, 7):
        ids, mask = padded([PROMPTS[2][:length], PROMPTS[1][:2]])
        outs.append(sampler(model, ids, mask, jax.random.key(0), cfg))
    assert sampler.num_compiles == 1
    ids, mask = padded([PROMPTS[2], PROMPTS[1][:2]], width=12)  # 7 real tokens, extra padding: same bucket 8
    again = sampler(model, ids, mask, jax.random.key(0), cfg)
    assert sampler.num_compiles == 1
    np.testing.assert_array_equal(again.tokens_BxN, outs[-1].tokens_BxN)
    ids, mask = padded([list(range(1, 13)), [5]])  # 12 tokens: bucket 16
    sampler(model, ids, mask, jax.random.key(0), cfg)
    assert sampler.num_compiles == 2
    with pytest.raises(ValueError, match="rollout.prompt_buckets"):
        sampler(model, *padded([list(range(1, 20))]), jax.random.key(0), cfg)


def test_prefill_runs_once_per_prompt(setup):
    model, greedy, _, _ = setup
    gd, st = nnx.split(model)
    ids, mask = padded(PROMPTS, width=8)
    jaxpr = str(jax.make_jaxpr(lambda s, i, m, k: sample_core(gd, s, i, m, k, greedy))(st, ids, mask,
                                                                                   jax.random.key(0)))
    B, P, D = len(PROMPTS), 8, model.cfg.hidden_size
    assert f"f32[{B},{P},{D}]" in jaxpr  # prompt activations: one row per prompt
    assert f"f32[{B * G},{P},{D}]" not in jaxpr  # never one per sample


def _sharded(model, shape):
    mesh = parallel.make_mesh(shape=shape)
    gd, st = nnx.split(model)
    return nnx.merge(gd, parallel.shard_state(st, mesh, parallel.SAMPLE_RULES)), mesh


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 2, 2), pytest.param((1, 2, 4), marks=pytest.mark.slow)])
def test_sharded_sampling_is_identical(setup, shape):
    model, greedy, _, _ = setup
    prompts = PROMPTS + [[3, 1, 4, 1, 5]]
    ids, mask = padded(prompts)
    cfg = greedy.replace(temperature=1.0) if shape == (2, 2, 2) else greedy
    ref = Sampler()(model, ids, mask, jax.random.key(5), cfg)
    smodel, mesh = _sharded(model, shape)
    out = Sampler(mesh=mesh, rules=parallel.SAMPLE_RULES)(smodel, ids, mask, jax.random.key(5), cfg)
    assert len(out.tokens_BxN.sharding.device_set) == 8
    np.testing.assert_array_equal(out.tokens_BxN, ref.tokens_BxN)
    np.testing.assert_allclose(out.logp_policy_BxN, ref.logp_policy_BxN, atol=1e-5)
