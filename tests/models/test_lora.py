"""LoRA adapters (models/lora.py): at init the model computes the base's logits (full forward and KV-cache decode,
every family, f32 and bf16 compute); merged weights match the on-the-fly adapters; target parsing; the merged HF
export and the PEFT adapter folder reproduce our logits in transformers / peft."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rlvr_jax import models, parallel
from rlvr_jax.config import base_config
from rlvr_jax.models import lora

FAMILIES = ("llama", "qwen2", "qwen3")  # qwen2: q/k/v bias; qwen3: q/k RMSNorm
DTYPES = {"f32": ("float32", "float32"), "bf16": ("bfloat16", "float32"), "bf16_params": ("bfloat16", "bfloat16")}
V, P, N = 96, 6, 1  # vocab, prompt length, decoded tokens (one KV-cache decode step)
MERGE_TOL = 2e-5  # |logit| difference merged vs on-the-fly (f32): only the fold's rounding of W + s * A @ B


def tiny_cfg(family, dtype="float32", param_dtype="float32", layers=1, **kw):
    return models.tiny(family, vocab_size=V, hidden_size=32, intermediate_size=48, num_layers=layers, num_heads=4,
                       num_kv_heads=2, dtype=dtype, param_dtype=param_dtype, **kw)


def random_model(cfg, seed=1):
    """Our model with random weights, norms and biases too (a dropped bias or norm shows in the logits)."""
    rng = np.random.RandomState(seed)
    graphdef, state = nnx.split(models.abstract(cfg))
    flat = []
    for path, var in nnx.to_flat_state(state):
        r = rng.standard_normal(var.shape).astype(np.float32)
        x = 1 + 0.2 * r if path[-1] == "scale" else (0.2 * r if path[-1] == "bias" else 0.15 * r)
        flat.append((path, var.replace(jnp.asarray(x, var.dtype))))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def perturb_adapters(model, seed=3, size=0.05):
    """Moves every adapter (B too: at init B = 0 and the adapters add nothing)."""
    key = jax.random.key(seed)
    for i, var in enumerate(v for _, d in lora._targets_of(model, lora.TARGETS) if d.lora_a is not None
                            for v in (d.lora_a, d.lora_b)):
        var.set_value(var.get_value() + size * jax.random.normal(jax.random.fold_in(key, i), var.shape))
    return model


def left_padded(seed=0, lengths=(P, 4, 2)):
    """tokens, mask [B, P + N] (left-padded prompts, then N response slots) and positions = cumsum(mask) - 1."""
    rng = np.random.RandomState(seed)
    pmask = np.arange(P)[None] >= (P - np.asarray(lengths))[:, None]
    mask = np.concatenate([pmask, np.ones((len(lengths), N), bool)], 1)
    tokens = np.where(mask, rng.randint(1, V, mask.shape), 0).astype(np.int32)
    return tokens, mask, np.maximum(np.cumsum(mask, 1) - 1, 0).astype(np.int32)


@nnx.jit
def full_logits(model, tokens, pos, mask):
    return model(tokens, pos, kv_mask_BxS=mask)[0].astype(jnp.float32)


@nnx.jit
def full_and_decoded(model, tokens, pos, mask):
    """(full-forward logits, logits of a P-token prefill then N one-token steps through the KV cache), each
    [B, P + N, V], in one jit (one compile per model)."""
    B, S = tokens.shape
    cache, out = models.init_cache(model.cfg, B, S), []
    for start, size in [(0, P)] + [(P + i, 1) for i in range(N)]:
        kv = mask & (jnp.arange(S) < start + size)[None]
        logits, cache = model(tokens[:, start:start + size], pos[:, start:start + size], kv_mask_BxS=kv,
                              cache=cache, cache_index=jnp.int32(start))
        out.append(logits.astype(jnp.float32))
    return model(tokens, pos, kv_mask_BxS=mask)[0].astype(jnp.float32), jnp.concatenate(out, 1)


def _exact_or_ulp(family, dtype):
    """Bit-exact, except qwen3 in float32: XLA:CPU fuses the adapters' exact `+ 0` into the q/k RMSNorm's
    mean-of-squares and reduces in another order (~1 ulp); with bf16 compute the rounding hides it."""
    return 2e-6 if family == "qwen3" and dtype == "f32" else 0.0


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("family", FAMILIES)
def test_init_logits_equal_base(family, dtype):
    """B = 0 at init: the adapters add an exact zero, in the full forward and in prefill + decode."""
    model = random_model(tiny_cfg(family, *DTYPES[dtype]))
    tokens, mask, pos = left_padded()
    args = (jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(mask))
    base = full_and_decoded(model, *args)
    lora.add_lora(model, 4, 16.0)
    assert lora.has_lora(model)
    tol = _exact_or_ulp(family, dtype)
    for path, got, want in zip(("full", "decode"), full_and_decoded(model, *args), base):
        d = float(np.abs(np.asarray(got) - np.asarray(want))[mask].max())
        assert d <= tol, (family, dtype, path, d)


def test_adapter_shapes_and_scale():
    """A [in, r] (PEFT's kaiming-uniform bound), B [r, out] = 0, float32 even on bf16 params, scale alpha / r."""
    model = lora.add_lora(random_model(tiny_cfg("qwen2", "bfloat16", "bfloat16", layers=2)), 8, 32.0, ("q_proj", "down_proj"))
    q, down = model.layers[0].self_attn.q_proj, model.layers[1].mlp.down_proj
    assert q.lora_a.shape == (32, 8) and q.lora_b.shape == (8, 32) and down.lora_a.shape == (48, 8)
    assert q.lora_a.dtype == jnp.float32 and q.kernel.dtype == jnp.bfloat16 and q.lora_scale == 4.0
    assert float(jnp.abs(q.lora_a[...]).max()) <= 1 / np.sqrt(32) and not bool(jnp.any(q.lora_b[...]))
    assert model.layers[0].self_attn.k_proj.lora_a is None and model.layers[0].mlp.up_proj.lora_a is None
    adapters, base = lora.split(nnx.state(model, nnx.Param))
    assert len(nnx.to_flat_state(adapters)) == 2 * 2 * 2  # (A, B) x 2 targets x 2 layers
    assert all(isinstance(v, nnx.LoRAParam) for _, v in nnx.to_flat_state(adapters))
    assert not any(isinstance(v, nnx.LoRAParam) for _, v in nnx.to_flat_state(base))
    assert lora.adapter_bytes(adapters) == 4 * 2 * (32 * 8 + 8 * 32 + 48 * 8 + 8 * 32)


def test_parse_targets():
    assert lora.parse_targets("all") == lora.TARGETS
    assert lora.parse_targets("attention") == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert lora.parse_targets(" v_proj, q_proj ,v_proj") == ("v_proj", "q_proj")
    assert lora.parse_targets("mlp,o_proj") == ("gate_proj", "up_proj", "down_proj", "o_proj")
    with pytest.raises(ValueError, match=r"^model\.lora_targets: unknown projection 'nope'"):
        lora.parse_targets("q_proj,nope")
    with pytest.raises(ValueError, match=r"^model\.lora_targets: empty"):
        lora.parse_targets(" , ")


@pytest.mark.parametrize("family", FAMILIES)
def test_merged_params_match_on_the_fly(family):
    """merged_params on the plain graphdef = base + adapters applied in each projection, to MERGE_TOL (f32)."""
    model = perturb_adapters(lora.add_lora(random_model(tiny_cfg(family)), 4, 16.0))
    tokens, mask, pos = left_padded(1)
    args = (jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(mask))
    gd, params = nnx.split(model, nnx.Param)
    plain_gd = lora.base_graphdef(gd, params)
    merged = jax.jit(lambda p: lora.merged_params(gd, p))(params)
    assert not any(isinstance(v, nnx.LoRAParam) for _, v in nnx.to_flat_state(merged))
    on_the_fly = np.asarray(full_logits(model, *args))
    folded = np.asarray(full_logits(nnx.merge(plain_gd, merged), *args))
    base = np.asarray(full_logits(nnx.merge(plain_gd, lora.split(params)[1]), *args))
    d = float(np.abs(folded - on_the_fly)[mask].max())
    print(f"{family}: merged vs on-the-fly max |logit diff| {d:.1e}; adapters moved the logits by "
          f"{float(np.abs(base - on_the_fly)[mask].max()):.2f}")
    assert d <= MERGE_TOL and float(np.abs(base - on_the_fly)[mask].max()) > 100 * MERGE_TOL
    assert not lora.has_lora(lora.merged_model(model)) and lora.has_lora(model)  # merged_model copies


# --------------------------------------------------------------------------------------- export: HF and PEFT

def _lora_program(family):
    """A TrainProgram (one device) and state of a tiny LoRA policy whose adapters were perturbed."""
    from rlvr_jax.train.program import train_program
    cfg = base_config()
    cfg.model.lora_rank = 4
    model = perturb_adapters(lora.add_lora(random_model(tiny_cfg(family)), 4, 8.0, ("q_proj", "v_proj", "up_proj")))
    program = train_program(cfg, model, None, parallel.single_device_mesh(), 1)
    return model, program, program.init_state(model)


def _torch_logits(hf_model, tokens, mask, pos):
    import torch
    with torch.no_grad():
        return hf_model(torch.tensor(tokens, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
                        position_ids=torch.tensor(pos, dtype=torch.long)).logits.float().numpy()


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_export_loads_in_transformers_and_peft(family, tmp_path):
    """export_policy: the merged HF folder loads in transformers with our logits; its adapter/ folder (PEFT
    layout) put on the exported base-free HF model (our base saved alone) by peft gives them too."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from rlvr_jax.train.export import export_policy
    model, program, state = _lora_program(family)
    out = str(tmp_path / "export")
    lines = export_policy(program, state, out)
    assert len(lines) == 2 and os.path.exists(os.path.join(out, "adapter", "adapter_model.safetensors"))
    tokens, mask, pos = left_padded(2)
    ours = np.asarray(full_logits(model, jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(mask)))
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    d = float(np.abs(_torch_logits(hf, tokens, mask, pos) - ours)[mask].max())
    print(f"{family}: merged HF export vs ours max |logit diff| {d:.1e}")
    assert d <= 1e-4
    cfg = json.load(open(os.path.join(out, "adapter", "adapter_config.json")))
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8.0 and cfg["target_modules"] == ["q_proj", "up_proj", "v_proj"]

    peft = pytest.importorskip("peft")
    base_dir = str(tmp_path / "base")
    models.save_pretrained(nnx.merge(program._plain_graphdef, jax.device_get(state.base)), base_dir)
    hf_base = transformers.AutoModelForCausalLM.from_pretrained(base_dir, attn_implementation="eager").eval()
    with_adapters = peft.PeftModel.from_pretrained(hf_base, os.path.join(out, "adapter")).eval()
    d = float(np.abs(_torch_logits(with_adapters, tokens, mask, pos) - ours)[mask].max())
    print(f"{family}: PEFT adapters on the HF base vs ours max |logit diff| {d:.1e}")
    assert d <= 1e-4
