"""The sampler runs the LoRA policy it is given: on XLA's dot, on the CPU kernels (whose packed Dense must add the
adapters too) and with the adapters folded into the kernels (`model.lora_sampling='merged'`), its logprobs equal
the trainer's teacher-forced ones to float error, and they differ from the base's (the adapters are not ignored)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rlvr_jax.kernels import cpu_gemm
from rlvr_jax.models import lora, tiny
from rlvr_jax.models.scoring import response_logprobs_and_entropy
from rlvr_jax.sampling import Sampler, SamplingConfig
from tests.sampling.sampler_helpers import PROMPTS, padded, peaky

MATMULS = ["xla"] + (["cpu_kernel"] if cpu_gemm.status()[0] else [])


def lora_policy(family):
    """(LoRA model with moved adapters, its base model): the adapters change the logits by O(1)."""
    cfg = tiny(family)
    base = peaky(cfg, seed=2, scale=2.0)
    model = lora.add_lora(peaky(cfg, seed=2, scale=2.0), rank=4, alpha=8.0, seed=5)
    gd, params = nnx.split(model, nnx.Param)
    adapters, frozen = lora.split(params)
    key = jax.random.key(9)
    moved = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.fold_in(key, x.size), x.shape), adapters)
    return nnx.merge(gd, lora.join(frozen, moved)), base


def trainer_logp(model, ids, mask, tokens_BxN, group):
    logp, _ = response_logprobs_and_entropy(model, jnp.asarray(ids).repeat(group, 0),
                                            jnp.asarray(mask).repeat(group, 0), tokens_BxN, group, 256)
    return np.asarray(logp)


# (family, matmul, merged): XLA's dot and the CPU kernels on the fly (qwen2: with biases), and merged weights
CASES = [("llama", "xla", False), ("qwen2", "cpu_kernel", False), ("llama", "cpu_kernel", True)]


@pytest.mark.parametrize("family,matmul,merged", [c for c in CASES if c[1] in MATMULS])
def test_sampler_logprobs_match_the_trainer_under_lora(family, matmul, merged):
    model, base = lora_policy(family)
    ids, mask = padded(PROMPTS)
    G = 3
    scfg = SamplingConfig(max_new_tokens=8, temperature=1.0, num_samples=G, prompt_buckets=(8,), matmul=matmul)
    run = lora.merged_model(model) if merged else model
    assert lora.has_lora(model) and not lora.has_lora(lora.merged_model(model))
    r = Sampler()(run, ids, mask, jax.random.key(3), scfg)
    m = np.asarray(r.mask_BxN, bool)
    want = trainer_logp(model, ids, mask, r.tokens_BxN, G)
    gap = np.abs(np.asarray(r.logp_policy_BxN) - want)[m]
    assert gap.max() < 2e-5, gap.max()  # float error (merged: one rounding of W + s A B)
    base_gap = np.abs(trainer_logp(base, ids, mask, r.tokens_BxN, G) - want)[m]
    assert base_gap.mean() > 1e-2, base_gap.mean()  # and the adapters matter
