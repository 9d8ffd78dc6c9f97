"""The DLC memory network: shapes from `memory_config`, shared vocabulary, initialisation from the policy."""
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rlvr_jax import models


def shapes(model):
    return {p: tuple(v.shape) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_memory_config_shapes(family):
    pol = models.tiny(family, num_heads=8, num_kv_heads=4, hidden_size=128, intermediate_size=256, num_layers=4)
    mem = models.memory_config(pol, width_ratio=0.25)
    assert (mem.num_heads, mem.num_kv_heads, mem.head_dim_) == (2, 2, 16)
    assert mem.hidden_size == 32 and mem.intermediate_size == 64 and mem.num_layers == 2
    assert mem.vocab_size == pol.vocab_size and mem.family == pol.family
    assert (mem.attention_bias, mem.qk_norm) == (pol.attention_bias, pol.qk_norm)
    s = shapes(models.abstract(mem))
    assert s[("embed_tokens",)] == (pol.vocab_size, 32)
    assert s[("layers", 1, "self_attn", "q_proj", "kernel")] == (32, 32)
    assert s[("layers", 1, "self_attn", "k_proj", "kernel")] == (32, 32)
    assert s[("layers", 1, "mlp", "down_proj", "kernel")] == (64, 32)
    assert ("layers", 2, "mlp", "up_proj", "kernel") not in s
    assert models.memory_config(pol, width_ratio=0.25, num_layers=3).num_layers == 3


def test_memory_config_heads_divide():
    pol = models.preset("qwen3-4b")  # 32 heads, 8 kv heads
    for r in (0.1, 0.2, 0.3, 0.5, 1.0):
        mem = models.memory_config(pol, width_ratio=r)
        assert mem.num_heads % mem.num_kv_heads == 0 and mem.num_heads >= 1
        assert mem.head_dim_ == pol.head_dim_ and mem.vocab_size == pol.vocab_size
    with pytest.raises(ValueError, match="memory.width_ratio"):
        models.memory_config(pol, width_ratio=0.0)


@nnx.jit
def forward(model, tokens):
    return model(tokens)[0]


@pytest.fixture(scope="module")
def policy():
    """Random params from numpy (norms too, so a skipped copy would show)."""
    cfg = models.tiny("qwen3", tie_word_embeddings=False)
    rng = np.random.RandomState(3)
    graphdef, state = nnx.split(models.abstract(cfg))
    flat = [(p, v.replace(jnp.asarray((1.0 if p[-1] == "scale" else 0.0)
                                      + 0.2 * rng.standard_normal(v.shape), v.dtype)))
            for p, v in nnx.to_flat_state(state)]
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def test_memory_from_policy_same_config_is_a_copy(policy):
    mem = models.memory_from_policy(policy, seed=9)
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, policy.cfg.vocab_size, (2, 10)), jnp.int32)
    a = forward(policy, tokens)
    b = forward(mem, tokens)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a copy, not an alias: changing the memory leaves the policy alone
    mem.embed_tokens[...] = mem.embed_tokens[...] + 1.0
    a2 = forward(policy, tokens)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(a2))


def test_memory_from_policy_smaller_takes_leading_slices(policy):
    cfg = models.memory_config(policy.cfg, width_ratio=0.5)
    mem = models.memory_from_policy(policy, cfg, seed=1)
    src = dict(nnx.to_flat_state(nnx.state(policy, nnx.Param)))
    for p, v in nnx.to_flat_state(nnx.state(mem, nnx.Param)):
        s = np.asarray(src[p][...])
        d = np.asarray(v[...])
        np.testing.assert_array_equal(d, s[tuple(slice(0, n) for n in d.shape)], err_msg=str(p))
    logits = forward(mem, jnp.zeros((2, 5), jnp.int32))
    assert logits.shape == (2, 5, policy.cfg.vocab_size) and bool(jnp.isfinite(logits).all())
