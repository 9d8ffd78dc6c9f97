"""HF checkpoint import/export against transformers' PyTorch models (the reference).

Tiny random Llama (plain and llama3 rope scaling), Qwen2 and Qwen3 models are saved by
transformers, loaded by us, and compared logit for logit on left-padded batches; our exports
are loaded back by transformers; sharded safetensors both ways.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from rlvr_jax import models
from rlvr_jax.models import hf_io
from rlvr_jax.models.config import RopeScaling

TOL = 1e-4
BASE = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, rms_norm_eps=1e-5, max_position_embeddings=1024)
LLAMA3 = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
VARIANTS = {
    "llama": (transformers.LlamaConfig, dict(tie_word_embeddings=True,
                                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    "llama3_rope": (transformers.LlamaConfig, dict(tie_word_embeddings=False, rope_parameters=LLAMA3)),
    "qwen2": (transformers.Qwen2Config, dict(tie_word_embeddings=False,
                                             rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
    "qwen3": (transformers.Qwen3Config, dict(tie_word_embeddings=True, head_dim=24,
                                             rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
}


def randomize_torch(model, seed):
    """Non-trivial norms and biases too, so a swapped or dropped tensor shows in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.2 * r if "norm" in name else (0.2 * r if name.endswith("bias") else 0.12 * r))
    return model.eval()


def random_model(cfg, seed):
    """Our model with random params (norms and biases too), filled from numpy: no init compiled."""
    rng = np.random.RandomState(seed)
    graphdef, state = nnx.split(models.abstract(cfg))
    flat = []
    for path, var in nnx.to_flat_state(state):
        r = rng.standard_normal(var.shape).astype(np.float32)
        x = 1 + 0.2 * r if path[-1] == "scale" else (0.2 * r if path[-1] == "bias" else 0.12 * r)
        flat.append((path, var.replace(jnp.asarray(x, var.dtype))))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def batch(seed=0, lengths=(24, 17, 9), vocab=96, offset=0):
    """Left-padded tokens, mask and positions = cumsum(mask) - 1 (+ offset)."""
    rng = np.random.RandomState(seed)
    T = max(lengths)
    mask = np.zeros((len(lengths), T), bool)
    for i, n in enumerate(lengths):
        mask[i, T - n:] = True
    tokens = np.where(mask, rng.randint(0, vocab, mask.shape), 0).astype(np.int32)
    pos = np.maximum(np.cumsum(mask, 1) - 1, 0).astype(np.int32) + offset
    return tokens, mask, pos


def torch_logits(model, tokens, mask, pos):
    with torch.no_grad():
        return model(torch.tensor(tokens, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
                     position_ids=torch.tensor(pos, dtype=torch.long)).logits.float().numpy()


@nnx.jit
def _forward(model, tokens, pos, mask):
    return model(tokens, pos, kv_mask_BxS=mask)[0].astype(jnp.float32)


def our_logits(model, tokens, mask, pos):
    return np.asarray(_forward(model, jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(mask)))


def max_diff(a, b, mask):
    return float(np.abs(a - b)[mask].max())


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def hf_pair(request, tmp_path_factory):
    """(name, torch model, folder saved by transformers, our model loaded from it)."""
    cls, kw = VARIANTS[request.param]
    torch.manual_seed(0)
    ref = randomize_torch(transformers.AutoModelForCausalLM.from_config(
        cls(**BASE, **kw), attn_implementation="eager", dtype=torch.float32), seed=1)
    folder = str(tmp_path_factory.mktemp(request.param))
    ref.save_pretrained(folder)
    return request.param, ref, folder, hf_io.from_pretrained(folder)


@pytest.mark.parametrize("offset", [0, 300])
def test_logits_match_transformers(hf_pair, offset):
    name, ref, _, ours = hf_pair
    tokens, mask, pos = batch(offset=offset)
    d = max_diff(our_logits(ours, tokens, mask, pos), torch_logits(ref, tokens, mask, pos), mask)
    print(f"{name} offset={offset}: max |logit diff| = {d:.2e}")
    assert d <= TOL, (name, d)


def test_config_read(hf_pair):
    name, ref, folder, ours = hf_pair
    cfg = ours.cfg
    assert cfg.family == {"llama3_rope": "llama"}.get(name, name)
    assert cfg.tie_word_embeddings == VARIANTS[name][1]["tie_word_embeddings"]
    assert (ours.lm_head is None) == cfg.tie_word_embeddings
    assert cfg.head_dim_ == getattr(ref.config, "head_dim", None) or BASE["hidden_size"] // 4
    assert (cfg.rope_scaling is not None) == (name == "llama3_rope")
    assert hf_io.config_from_hf(hf_io.config_to_hf(cfg)) == cfg


def test_llama3_scaling_matters():
    """The scaled rope must change the logits at these positions, or the parity test proves nothing."""
    cfg = hf_io.config_from_hf({"architectures": ["LlamaForCausalLM"], "rope_parameters": LLAMA3, **BASE})
    scaled = random_model(cfg, seed=3)
    plain = nnx.merge(nnx.graphdef(models.abstract(cfg.replace(rope_scaling=None))), nnx.state(scaled))
    tokens, mask, pos = batch(offset=300)
    assert max_diff(our_logits(plain, tokens, mask, pos), our_logits(scaled, tokens, mask, pos), mask) > 1e-2


def test_sharded_read(hf_pair, tmp_path):
    name, ref, _, ours = hf_pair
    ref.save_pretrained(tmp_path, max_shard_size="20KB")
    assert os.path.exists(tmp_path / hf_io.INDEX_FILE)
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".safetensors")]) > 2
    loaded = models.from_pretrained(str(tmp_path))
    tokens, mask, pos = batch(seed=3)
    assert max_diff(our_logits(loaded, tokens, mask, pos), torch_logits(ref, tokens, mask, pos), mask) <= TOL


FAMILIES = {"llama3_rope": dict(family="llama", tie_word_embeddings=False,
                                rope_scaling=RopeScaling(8.0, 1.0, 4.0, 64), rope_theta=5e5),
            "qwen2": dict(family="qwen2"), "qwen3": dict(family="qwen3", head_dim=24)}


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("shard_mb", [None, 0.02])
def test_save_pretrained_loads_in_transformers(name, shard_mb, tmp_path):
    kw = dict(FAMILIES[name])
    cfg = models.tiny(kw.pop("family"), vocab_size=96, bos_token_id=1, eos_token_id=(2, 3), **kw)
    ours = random_model(cfg, seed=5)
    models.save_pretrained(ours, str(tmp_path), shard_size_mb=shard_mb)
    files = os.listdir(tmp_path)
    assert (hf_io.INDEX_FILE in files) == (shard_mb is not None)
    with open(tmp_path / "config.json") as f:
        arch = json.load(f)["architectures"]
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), attn_implementation="eager",
                                                            dtype=torch.float32).eval()
    assert type(ref).__name__ == arch[0] == hf_io._ARCH_OF_FAMILY[cfg.family]
    tokens, mask, pos = batch(seed=7, offset=100)
    d = max_diff(our_logits(ours, tokens, mask, pos), torch_logits(ref, tokens, mask, pos), mask)
    print(f"export {name} shard={shard_mb}: max |logit diff| = {d:.2e}")
    assert d <= TOL
    back = hf_io.from_pretrained(str(tmp_path))
    assert back.cfg == cfg.replace(head_dim=cfg.head_dim_)
    for (p, a), (_, b) in zip(nnx.to_flat_state(nnx.state(ours, nnx.Param)),
                              nnx.to_flat_state(nnx.state(back, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]), err_msg=str(p))


def test_legacy_config_keys():
    new = {"architectures": ["LlamaForCausalLM"], "vocab_size": 96, "hidden_size": 64, "intermediate_size": 96,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "rope_parameters": dict(LLAMA3), "dtype": "bfloat16", "tie_word_embeddings": True}
    old = {k: v for k, v in new.items() if k not in ("rope_parameters", "dtype")}
    old.update(rope_theta=500000.0, torch_dtype="bfloat16",
               rope_scaling={"type": "llama3", **{k: v for k, v in LLAMA3.items() if k not in ("rope_type",
                                                                                             "rope_theta")}})
    a, b = hf_io.config_from_hf(new), hf_io.config_from_hf(old)
    assert a == b and a.rope_theta == 500000.0 and a.rope_scaling == RopeScaling(8.0, 1.0, 4.0, 64)
    assert a.head_dim_ == 16 and a.dtype == a.param_dtype == "float32"
    # model_type alone (no architectures) also resolves; Qwen3 without head_dim gets transformers' 128
    q3 = hf_io.config_from_hf({**{k: v for k, v in new.items() if k != "architectures"}, "model_type": "qwen3"})
    assert q3.family == "qwen3" and q3.qk_norm and q3.head_dim_ == 128


def test_param_dtype_bfloat16(tmp_path):
    cfg = models.tiny("qwen3", vocab_size=96)
    ours = random_model(cfg, seed=4)
    models.save_pretrained(ours, str(tmp_path))
    low = hf_io.from_pretrained(str(tmp_path), dtype="bfloat16")
    assert low.embed_tokens[...].dtype == jnp.bfloat16 and low.cfg.param_dtype == "bfloat16"
    mixed = hf_io.from_pretrained(str(tmp_path), dtype="float32", param_dtype="bfloat16")
    assert mixed.embed_tokens[...].dtype == jnp.bfloat16 and mixed.cfg.jnp_dtype == jnp.float32
    tokens, mask, pos = batch(seed=2)
    d = max_diff(our_logits(low, tokens, mask, pos), our_logits(ours, tokens, mask, pos), mask)
    assert 0 < d < 0.5


def test_load_onto_mesh(tmp_path):
    """With a mesh each tensor lands directly on its logical-axis sharding; logits unchanged."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    ours = random_model(models.tiny("qwen2", vocab_size=96), seed=6)
    models.save_pretrained(ours, str(tmp_path))
    mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(2, 2, 2), ("data", "fsdp", "tensor"))
    sharded = hf_io.from_pretrained(str(tmp_path), mesh=mesh)
    q = sharded.layers[0].self_attn.q_proj.kernel[...]
    assert isinstance(q.sharding, NamedSharding) and q.sharding.spec == P("fsdp", "tensor")
    assert len(q.addressable_shards) == 8 and q.addressable_shards[0].data.shape == (32, 32)
    tokens, mask, pos = batch(seed=4)
    assert max_diff(our_logits(sharded, tokens, mask, pos), our_logits(ours, tokens, mask, pos), mask) <= 1e-5


def test_bfloat16_checkpoint_read_as_float32(tmp_path):
    """Real Qwen3/Llama checkpoints are bf16 on disk: read and upcast exactly."""
    cls, kw = VARIANTS["qwen3"]
    ref = randomize_torch(transformers.AutoModelForCausalLM.from_config(
        cls(**BASE, **kw), attn_implementation="eager", dtype=torch.float32), seed=8)
    ref.to(torch.bfloat16).save_pretrained(tmp_path)
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["dtype"] == "bfloat16"
    ours = hf_io.from_pretrained(str(tmp_path))
    assert ours.embed_tokens[...].dtype == jnp.float32
    tokens, mask, pos = batch(seed=5)
    # reference: transformers reading the same bf16 files into float32 (fresh float32 rope buffers)
    ref32 = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32,
                                                              attn_implementation="eager").eval()
    assert max_diff(our_logits(ours, tokens, mask, pos), torch_logits(ref32, tokens, mask, pos), mask) <= TOL
