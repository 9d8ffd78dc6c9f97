"""QLoRA's int8 base (`lora.quantize_base`, model.lora_quant='int8'): per-channel int8 within half a step of the float
kernel, the LoRA model at init computes the quantized base exactly, gradients reach the float adapters only, merged
weights (the export and the merged sampler) match the on-the-fly model, and the base takes a quarter of the bytes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rlvr_jax import models
from rlvr_jax.config import ConfigError, base_config, validate
from rlvr_jax.models import lora
from rlvr_jax.sampling import Sampler, SamplingConfig

TOKENS = (jnp.arange(48).reshape(3, 16) * 7) % 128


def qlora(family="llama", rank=4):
    cfg = models.tiny(family)
    return models.create(cfg, seed=0), lora.add_lora(lora.quantize_base(models.create(cfg, seed=0)), rank, 8.0, seed=1)


def logits(model):
    gd, params = nnx.split(model, nnx.Param)
    return jax.jit(lambda p: nnx.merge(gd, p)(TOKENS)[0])(params)


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_int8_kernels_are_within_half_a_step(family):
    base, q = qlora(family)
    pairs = [(d0, d1) for (_, d0), (_, d1) in zip(lora._targets_of(base, lora.TARGETS), lora._targets_of(q, lora.TARGETS))]
    assert len(pairs) == 7 * base.cfg.num_layers
    for d0, d1 in pairs:
        w, s = np.asarray(d0.kernel[...]), np.asarray(d1.kernel_scale[...])
        assert d1.kernel[...].dtype == jnp.int8 and s.shape == (w.shape[1],)
        err = np.abs(np.asarray(d1.kernel[...], np.float32) * s - w)
        assert np.all(err <= 0.5 * s + 1e-7)
    if family == "llama":  # one forward pair is enough for the logits' error
        rel = float(jnp.linalg.norm(logits(q) - logits(base)) / jnp.linalg.norm(logits(base)))
        assert 0 < rel < 0.02, rel


def test_lora_on_an_int8_base_starts_exactly_at_that_base():
    _, q = qlora()
    gd, params = nnx.split(q, nnx.Param)
    adapters, frozen = lora.split(params)
    plain = lora.join(frozen, lora.zero_adapters(adapters))
    np.testing.assert_array_equal(np.asarray(logits(q)), np.asarray(jax.jit(lambda p: nnx.merge(gd, p)(TOKENS)[0])(plain)))


def test_gradients_reach_the_adapters_only_and_merging_matches():
    _, q = qlora()
    gd, params = nnx.split(q, nnx.Param)
    adapters, frozen = lora.split(params)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(adapters))

    def loss(a):
        return jnp.mean(jax.nn.log_softmax(nnx.merge(gd, lora.join(frozen, a))(TOKENS)[0])[..., 5])
    g = jax.jit(jax.grad(loss))(adapters)
    assert jax.tree.structure(g) == jax.tree.structure(adapters)
    assert float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(g))) > 0
    moved = jax.tree.map(lambda a, d: a - 0.5 * d / (jnp.max(jnp.abs(d)) + 1e-12), adapters, g)
    live = nnx.merge(gd, lora.join(frozen, moved))
    merged = lora.merged_model(live)
    assert not lora.is_quantized(merged) and not lora.has_lora(merged) and lora.is_quantized(live)
    np.testing.assert_allclose(np.asarray(merged(TOKENS)[0]), np.asarray(live(TOKENS)[0]), atol=2e-5)
    plain_gd = lora.base_graphdef(gd, lora.join(frozen, moved))
    folded = jax.jit(lambda p: lora.merged_params(gd, p))(lora.join(frozen, moved))
    np.testing.assert_allclose(np.asarray(nnx.merge(plain_gd, folded)(TOKENS)[0]), np.asarray(live(TOKENS)[0]),
                               atol=2e-5)


def test_sampler_runs_the_int8_base_and_its_logprobs_match_the_trainer():
    from rlvr_jax.models.scoring import response_logprobs_and_entropy
    _, q = qlora()
    ids, mask = np.array([[0, 5, 6, 7], [9, 10, 11, 12]], np.int32), np.array([[0, 1, 1, 1], [1, 1, 1, 1]], bool)
    r = Sampler()(q, ids, mask, jax.random.key(0), SamplingConfig(max_new_tokens=4, num_samples=2, prompt_buckets=(4,)))
    want, _ = response_logprobs_and_entropy(q, jnp.asarray(ids).repeat(2, 0), jnp.asarray(mask).repeat(2, 0),
                                            r.tokens_BxN, 2, 64)
    m = np.asarray(r.mask_BxN, bool)
    assert np.abs(np.asarray(r.logp_policy_BxN) - np.asarray(want))[m].max() < 2e-5


def test_base_bytes_shrink_to_about_a_quarter():
    cfg = models.preset("smollm2-135m")
    nbytes = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))  # noqa: E731
    full = nnx.eval_shape(lambda: models.create(cfg))
    quant = nnx.eval_shape(lambda: lora.quantize_base(models.create(cfg)))
    proj = lambda m: nbytes([d.kernel for _, d in lora._targets_of(m, lora.TARGETS)])  # noqa: E731
    assert proj(quant) * 4 == proj(full)
    assert nbytes(nnx.state(quant, nnx.Param)) < 0.45 * nbytes(nnx.state(full, nnx.Param))  # embeddings stay float


def test_config_refuses_a_warm_up_on_an_int8_base():
    cfg = base_config()
    cfg.model.lora_rank, cfg.model.lora_quant, cfg.train.pretrain_steps = 8, "int8", 10
    with pytest.raises(ConfigError, match="model.lora_quant"):
        validate(cfg)
