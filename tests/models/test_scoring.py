"""Chunked logprobs/entropy equal the unchunked reference, and never hold [B, T, V] float32 logits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rlvr_jax.models.scoring import (chunked_logprobs_and_entropy, logprobs_from_logits, token_logprobs_and_entropy,
                                     token_logprobs_and_entropy_reference)
from rlvr_jax.models.config import tiny
from rlvr_jax.models.transformer import create

B, T, V = 2, 24, 128  # B*T*V exceeds every other tensor of the tiny model (embedding V*D = 4096)


def batch(seed=0):
    rng = np.random.default_rng(seed)
    tokens = jnp.asarray(rng.integers(0, V, size=(B, T)), jnp.int32)
    targets = jnp.roll(tokens, -1, axis=1)
    # left padding on row 1: 5 pad slots, positions start after them
    kv = jnp.asarray(np.arange(T)[None] >= np.array([[0], [5]]))
    pos = jnp.maximum(jnp.cumsum(kv, axis=1) - 1, 0).astype(jnp.int32)
    return tokens, pos, kv, targets


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def model(request):
    return create(tiny("qwen3", vocab_size=V, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1,
                       num_layers=1, dtype=request.param), seed=0)


CHUNKS = (1, 5, 8, 100)  # 5 does not divide T = 24 (nor does 7, in the gradient test); 100 > T


@pytest.fixture(scope="module")
def chunked_results(model):
    """Reference and every chunk size's (logp, entropy), from one compiled function per dtype."""
    tokens, pos, kv, targets = batch()

    def all_versions(t, p, m):
        h, _ = model(t, p, kv_mask_BxS=m, return_hidden=True)
        ref = logprobs_from_logits(model.project(h), targets)
        return ref, {c: chunked_logprobs_and_entropy(model.project, h, targets, c) for c in CHUNKS}

    return jax.jit(all_versions)(tokens, pos, kv)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_chunked_equals_full_projection(model, chunked_results, chunk):
    (logp_ref, ent_ref), results = chunked_results
    logp, ent = results[chunk]
    assert logp.dtype == jnp.float32 and logp.shape == (B, T)
    tol = 1e-5 if model.cfg.dtype == "float32" else 1e-4  # bf16: same logits, float32 reductions per chunk
    np.testing.assert_allclose(np.asarray(logp), np.asarray(logp_ref), atol=tol, rtol=tol)
    np.testing.assert_allclose(np.asarray(ent), np.asarray(ent_ref), atol=tol, rtol=tol)
    assert np.all(np.isfinite(np.asarray(logp)))


def test_model_level_and_gradients_match_reference():
    """token_logprobs_and_entropy (chunk 7, not dividing T) against the plain version, values and gradients."""
    model = create(tiny("qwen3", vocab_size=V, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1,
                        num_layers=1), seed=1)
    tokens, pos, kv, targets = batch(1)
    graphdef, params = nnx.split(model)

    def loss(p, chunked):
        m = nnx.merge(graphdef, p)
        if chunked:
            logp, ent = token_logprobs_and_entropy(m, tokens, pos, kv, targets, 7)
        else:
            logp, ent = token_logprobs_and_entropy_reference(m, tokens, pos, kv, targets)
        w = jnp.where(kv, 1.0, 0.0)
        return jnp.sum(logp * w) + 0.3 * jnp.sum(ent * w), (logp, ent)

    both = jax.jit(lambda p: [jax.value_and_grad(lambda q: loss(q, c), has_aux=True)(p) for c in (True, False)])
    ((_, (lp1, e1)), g1), ((_, (lp2, e2)), g2) = both(params)
    np.testing.assert_allclose(np.asarray(lp1), np.asarray(lp2), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(e1), np.asarray(e2), atol=1e-5, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        scale = float(np.max(np.abs(np.asarray(b)))) + 1e-6
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5 * scale)


def _avals(jaxpr):
    """Every intermediate abstract value in a jaxpr, sub-jaxprs (scan, remat, pjit) included."""
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            yield v.aval
        for p in eqn.params.values():
            subs = p if isinstance(p, (list, tuple)) else [p]
            for sub in subs:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _avals(inner)


def _largest_f32(fn, *args):
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    return max(int(np.prod(a.shape)) for a in _avals(jaxpr) if getattr(a, "dtype", None) == jnp.float32)


def test_no_full_float32_logits_forward_and_backward():
    model = create(tiny("llama", vocab_size=V, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1,
                        num_layers=1), seed=0)
    tokens, pos, kv, targets = batch()
    graphdef, params = nnx.split(model)

    def grad_of(version):
        def f(p):
            m = nnx.merge(graphdef, p)
            if version == "chunked":
                logp, ent = token_logprobs_and_entropy(m, tokens, pos, kv, targets, 8)
            else:
                logp, ent = token_logprobs_and_entropy_reference(m, tokens, pos, kv, targets)
            return jnp.sum(logp) + jnp.sum(ent)
        return jax.grad(f)

    full = B * T * V
    assert _largest_f32(grad_of("reference"), params) >= full  # the check can fail
    assert _largest_f32(grad_of("chunked"), params) < full
    assert _largest_f32(grad_of("chunked"), params) <= max(B * 8 * V, V * 32)


def test_bad_chunk():
    with pytest.raises(ValueError, match="config.algo.logprob_chunk"):
        chunked_logprobs_and_entropy(lambda h: h, jnp.zeros((1, 4, 2)), jnp.zeros((1, 4), jnp.int32), 0)


@pytest.mark.parametrize("remat", [False, True])
def test_response_logprobs_shared_prompt_match_full_forward(remat):
    """response_logprobs_and_entropy, prompt shared by groups of 3 (KV cache repeated) and per row (group 1),
    against the unchunked full forward over prompt + response: values and gradients."""
    from rlvr_jax.models.scoring import response_logprobs_and_entropy
    model = create(tiny("llama", vocab_size=V, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1,
                        num_layers=2, remat=remat), seed=2)
    G, U, P, N = 3, 2, 6, 5
    rng = np.random.default_rng(5)
    prompt = np.repeat(rng.integers(1, V, (U, P)), G, 0).astype(np.int32)
    pmask = np.ones((U * G, P), bool)
    pmask[G:, :2] = False  # the second prompt is left-padded by 2
    prompt[~pmask] = 0
    resp = rng.integers(1, V, (U * G, N)).astype(np.int32)
    graphdef, params = nnx.split(model)
    tokens = np.concatenate([prompt, resp], 1)
    present = np.concatenate([pmask, np.ones_like(resp, bool)], 1)
    pos = np.maximum(np.cumsum(present, 1) - 1, 0)

    def loss(p, version):
        m = nnx.merge(graphdef, p)
        if version == "reference":
            lp, ent = token_logprobs_and_entropy_reference(m, tokens[:, :-1], pos[:, :-1], present[:, :-1],
                                                           tokens[:, 1:])
            lp, ent = lp[:, P - 1:], ent[:, P - 1:]
        else:
            lp, ent = response_logprobs_and_entropy(m, prompt, pmask, resp, version, 4)
        w = jnp.linspace(0.5, 1.5, U * G * N).reshape(U * G, N)  # rows weighted differently
        return jnp.sum(lp * w) + 0.3 * jnp.sum(ent), (lp, ent)

    out = jax.jit(lambda p: [jax.value_and_grad(lambda q: loss(q, v), has_aux=True)(p)
                             for v in ("reference", 1, G)])(params)
    (_, (lp_ref, e_ref)), g_ref = out[0]
    for (_, (lp, e)), g in out[1:]:
        assert lp.shape == (U * G, N)
        np.testing.assert_allclose(np.asarray(lp), np.asarray(lp_ref), atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(e), np.asarray(e_ref), atol=1e-5, rtol=1e-5)
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
            scale = float(np.max(np.abs(np.asarray(b)))) + 1e-6
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5 * scale)


def test_response_logprobs_rejects_partial_groups():
    from rlvr_jax.models.scoring import response_logprobs_and_entropy
    model = create(tiny("llama", vocab_size=V, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1,
                        num_layers=1), seed=0)
    with pytest.raises(ValueError, match="groups of 3"):
        response_logprobs_and_entropy(model, jnp.ones((4, 3), jnp.int32), jnp.ones((4, 3), bool),
                                      jnp.ones((4, 2), jnp.int32), 3, 4)
