"""The sampler on the CPU kernels (`matmul="cpu_kernel"`, what "auto" picks on one x86 CPU device)
against the same sampler on XLA's dot: same tokens, log-probs to float32 rounding, with and without a
DLC memory network, tied and untied LM heads; and the setting really switches the compiled program."""
import jax
import numpy as np
import pytest
from flax import nnx

from rlvr_jax.kernels import cpu_gemm
from rlvr_jax.models import create, memory_config, tiny
from rlvr_jax.models.layers import Attention, Dense
from rlvr_jax.models.transformer import Transformer
from rlvr_jax.sampling import Sampler, SamplingConfig, sample_core
from tests.sampling.sampler_helpers import PROMPTS, padded, peaky

pytestmark = pytest.mark.skipif(not cpu_gemm.status()[0], reason=f"CPU kernel unavailable: {cpu_gemm.status()[1]}")


@pytest.fixture(scope="module", params=["llama", "qwen3"])
def models(request):
    cfg = tiny(request.param, tie_word_embeddings=request.param == "llama")
    policy = peaky(cfg, seed=2, scale=2.0)
    memory = create(memory_config(cfg, width_ratio=0.5), seed=3)
    return policy, memory


@pytest.mark.parametrize("temperature,dlc", [(0.0, False), (1.0, False), (1.0, True)])
def test_kernel_sampler_equals_xla_sampler(models, temperature, dlc):
    policy, memory = models
    ids, mask = padded(PROMPTS)
    base = SamplingConfig(max_new_tokens=8, temperature=temperature, num_samples=3, prompt_buckets=(8,),
                          dlc_mu=0.7 if dlc else 0.0)
    out = {}
    for mm in ("xla", "cpu_kernel"):
        out[mm] = Sampler()(policy, ids, mask, jax.random.key(11), base.replace(matmul=mm),
                            memory=memory if dlc else None)
    a, b = out["xla"], out["cpu_kernel"]
    np.testing.assert_array_equal(np.asarray(b.tokens_BxN), np.asarray(a.tokens_BxN))
    np.testing.assert_allclose(np.asarray(b.logp_policy_BxN), np.asarray(a.logp_policy_BxN), atol=1e-5)
    np.testing.assert_allclose(np.asarray(b.logp_sampler_BxN), np.asarray(a.logp_sampler_BxN), atol=1e-5)


def test_matmul_setting_switches_the_compiled_program(models):
    policy, _ = models
    gd, st = nnx.split(policy)
    ids, mask = padded(PROMPTS)

    def hlo(mm):
        cfg = SamplingConfig(max_new_tokens=4, num_samples=2, prompt_buckets=(8,), matmul=mm)
        return jax.jit(lambda s: sample_core(gd, s, ids, mask, jax.random.key(0), cfg)).lower(st).as_text()

    n_dense = 7 * policy.cfg.num_layers + 1  # projections and the LM head
    kernel, xla = hlo("cpu_kernel"), hlo("xla")
    assert kernel.count(cpu_gemm.TARGET) >= 2 * n_dense  # prefill and decode step
    assert kernel.count(cpu_gemm.ATTN_TARGET) == policy.cfg.num_layers  # decode step only
    assert cpu_gemm.TARGET not in xla and cpu_gemm.ATTN_TARGET not in xla
    assert hlo("auto").count(cpu_gemm.TARGET) == kernel.count(cpu_gemm.TARGET)


def test_kept_packed_weights_do_not_leak_between_calls(models):
    """The Sampler keeps (and donates) its packed-weight buffers: a second call, with other weights,
    samples exactly what a fresh sampler does."""
    policy, memory = models
    ids, mask = padded(PROMPTS)
    cfg = SamplingConfig(max_new_tokens=6, temperature=1.0, num_samples=2, prompt_buckets=(8,), dlc_mu=0.5,
                         matmul="cpu_kernel")
    sampler = Sampler()
    sampler(policy, ids, mask, jax.random.key(1), cfg, memory=memory)
    assert ("policy_packed", policy.cfg) in sampler._caches and ("memory_packed", memory.cfg) in sampler._caches
    other = create(policy.cfg, seed=9)
    again = sampler(other, ids, mask, jax.random.key(2), cfg, memory=memory)
    fresh = Sampler()(other, ids, mask, jax.random.key(2), cfg, memory=memory)
    np.testing.assert_array_equal(np.asarray(again.tokens_BxN), np.asarray(fresh.tokens_BxN))
    np.testing.assert_array_equal(np.asarray(again.logp_policy_BxN), np.asarray(fresh.logp_policy_BxN))


def test_one_device_mesh_uses_the_kernels_and_compiles_once(models):
    """A one-device mesh (what `rlvr-train` makes on a single CPU) decodes on the kernels, and the kept
    packed buffers come back placed as they went in: three calls, one compilation."""
    from rlvr_jax import parallel
    policy, _ = models
    mesh = parallel.make_mesh(shape=(1, 1, 1), devices=jax.devices()[:1])
    sampler = Sampler(mesh, parallel.SAMPLE_RULES)
    ids, mask = padded(PROMPTS)
    cfg = SamplingConfig(max_new_tokens=4, num_samples=2, prompt_buckets=(8,))
    outs = [sampler(policy, ids, mask, jax.random.key(i), cfg) for i in range(3)]
    assert sampler.num_compiles == 1
    assert ("policy_packed", policy.cfg) in sampler._caches
    ref = Sampler()(policy, ids, mask, jax.random.key(2), cfg.replace(matmul="xla"))
    np.testing.assert_array_equal(np.asarray(outs[2].tokens_BxN), np.asarray(ref.tokens_BxN))


def test_packing_leaves_the_merged_state_untouched(models):
    """nnx.merge shares Variable objects with its State: packing must not write the packed layout into
    them, or whatever else is traced from the same State (the fused iteration's train step) reads it."""
    from rlvr_jax.sampling.decode_kernels import pack_for_decode
    policy, _ = models
    gd, st = nnx.split(policy)

    def after_packing(st):
        pack_for_decode(nnx.merge(gd, st))
        m = nnx.merge(gd, st)
        assert type(m) is Transformer and type(m.layers[0].mlp.up_proj) is Dense
        return m.layers[0].mlp.up_proj.kernel[...]

    kernel = jax.jit(after_packing)(st)
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(policy.layers[0].mlp.up_proj.kernel[...]))


def test_model_classes_hold_no_kernel_code(models):
    """The kernels live only in `sampling.decode_kernels`: the general modules carry no kernel flags."""
    policy, _ = models
    attn = policy.layers[0].self_attn
    for m, gone in [(policy, "packed_head"), (attn, "decode_kernel"), (attn.q_proj, "packed")]:
        assert not hasattr(m, gone), gone
    assert type(policy) is Transformer and type(attn) is Attention and type(attn.q_proj) is Dense


def test_packed_copy_gives_the_same_logits(models):
    """A `pack_for_decode`d copy (kernel subclasses, packed weights) computes the original's logits over
    prefill and a decode step, and `packed_arrays` returns its packed weights in `packed_shapes` order."""
    from rlvr_jax.models.transformer import init_cache, prompt_positions
    from rlvr_jax.sampling.decode_kernels import (KernelAttention, PackedDense, PackedHeadTransformer,
                                                  pack_for_decode, packed_arrays, packed_shapes)
    policy, _ = models
    gd, st = nnx.split(policy)
    ids, mask = padded(PROMPTS)
    B, P = ids.shape

    def run(st, packed):
        m = nnx.merge(gd, st)
        if packed:
            m = pack_for_decode(m)
            assert isinstance(m, PackedHeadTransformer)
            assert isinstance(m.layers[0].self_attn, KernelAttention)
            assert isinstance(m.layers[0].mlp.down_proj, PackedDense)
            assert [a.shape for a in packed_arrays(m)] == packed_shapes(policy)
        kv_mask = np.concatenate([mask, np.ones((B, 1), bool)], axis=1)
        cache = init_cache(m.cfg, B, P + 1)
        z_pre, cache = m(ids, prompt_positions(mask), kv_mask_BxS=kv_mask, cache=cache, cache_index=0)
        pos = mask.sum(-1, keepdims=True).astype(np.int32)
        z_dec, _ = m(ids[:, -1:], pos, kv_mask_BxS=kv_mask, cache=cache, cache_index=P)
        return z_pre, z_dec

    ref, got = jax.jit(lambda s: run(s, False))(st), jax.jit(lambda s: run(s, True))(st)
    for a, b in zip(ref, got):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5, rtol=1e-5)
