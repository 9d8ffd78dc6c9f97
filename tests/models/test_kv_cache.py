"""KV cache: prefill + token-by-token decode reproduces the full forward, left padding included.

Rows are left-padded prompts with positions = cumsum(mask) - 1; the cache is longer than
needed, so never-written slots must be masked out too.
"""
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rlvr_jax import models
from rlvr_jax.models.config import RopeScaling

TOL = 1e-5
CFGS = {"llama3_rope": models.tiny("llama", rope_scaling=RopeScaling(8.0, 1.0, 4.0, 16), rope_theta=5e5,
                                   tie_word_embeddings=False),
        "qwen2": models.tiny("qwen2"), "qwen3": models.tiny("qwen3", head_dim=24)}
P, N, SLACK = 8, 6, 3  # prompt length, decoded tokens, unused cache slots


def random_model(cfg, seed):
    rng = np.random.RandomState(seed)
    graphdef, state = nnx.split(models.abstract(cfg))
    flat = []
    for path, var in nnx.to_flat_state(state):
        r = rng.standard_normal(var.shape).astype(np.float32)
        x = 1 + 0.2 * r if path[-1] == "scale" else (0.2 * r if path[-1] == "bias" else 0.12 * r)
        flat.append((path, var.replace(jnp.asarray(x, var.dtype))))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


@nnx.jit
def full(model, tokens, pos, mask):
    return model(tokens, pos, kv_mask_BxS=mask)[0]


@nnx.jit
def step(model, tokens, pos, kv_mask, cache, index):
    """One cached call; `index` is traced, as in the sampler's while loop."""
    return model(tokens, pos, kv_mask_BxS=kv_mask, cache=cache, cache_index=index)


@pytest.fixture(scope="module", params=sorted(CFGS))
def case(request):
    cfg = CFGS[request.param]
    rng = np.random.RandomState(0)
    lengths = np.array([P, 5, 2])
    prompt_mask = np.arange(P)[None, :] >= (P - lengths)[:, None]
    mask = np.concatenate([prompt_mask, np.ones((3, N), bool)], 1)
    tokens = np.where(mask, rng.randint(0, cfg.vocab_size, mask.shape), 0).astype(np.int32)
    pos = np.maximum(np.cumsum(mask, 1) - 1, 0).astype(np.int32)
    model = random_model(cfg, 1)
    ref = np.asarray(full(model, jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(mask)))
    return request.param, model, tokens, pos, mask, ref


def run_cached(model, tokens, pos, mask, prefill_chunks):
    """Prefill in the given chunk sizes, then decode one token at a time; returns all logits."""
    cfg = model.cfg
    B = tokens.shape[0]
    cache = models.init_cache(cfg, B, P + N + SLACK)
    kv = np.zeros((B, P + N + SLACK), bool)
    out, start = [], 0
    for size in list(prefill_chunks) + [1] * N:
        sl = slice(start, start + size)
        kv[:, sl] = mask[:, sl]
        logits, cache = step(model, jnp.asarray(tokens[:, sl]), jnp.asarray(pos[:, sl]), jnp.asarray(kv), cache,
                             jnp.int32(start))
        out.append(np.asarray(logits))
        start += size
    return np.concatenate(out, 1), cache


@pytest.mark.parametrize("chunks", [(P,), (3, 5)], ids=["prefill", "chunked_prefill"])
def test_cache_matches_full_forward(case, chunks):
    name, model, tokens, pos, mask, ref = case
    got, cache = run_cached(model, tokens, pos, mask, chunks)
    d = float(np.abs(got - ref)[mask].max())
    print(f"{name} {chunks}: max |logit diff| cached vs full = {d:.2e}")
    assert d <= TOL, (name, d)
    assert len(cache) == model.cfg.num_layers
    k = np.asarray(cache[0][0])
    assert k.shape == (3, model.cfg.num_kv_heads, P + N + SLACK, model.cfg.head_dim_)  # [B, K, S, D]
    assert np.all(k[:, :, P + N:] == 0)  # slack slots never written


def test_padding_is_invisible(case):
    """Changing the pad tokens of a left-padded row changes none of its real logits."""
    name, model, tokens, pos, mask, ref = case
    noisy = np.where(mask, tokens, (tokens + 7) % model.cfg.vocab_size)
    assert (noisy != tokens).any()
    got, _ = run_cached(model, noisy, pos, mask, (P,))
    assert float(np.abs(got - ref)[mask].max()) <= TOL


def test_kv_mask_required_with_cache():
    model = random_model(CFGS["qwen2"], 0)
    with pytest.raises(ValueError, match="kv_mask_BxS is required"):
        model(jnp.zeros((1, 1), jnp.int32), cache=models.init_cache(model.cfg, 1, 4), cache_index=0)
