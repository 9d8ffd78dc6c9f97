"""Random SmolLM2-135M-shaped weights, written once with numpy as an HF safetensors folder, so every
framework in the sampler benchmark loads identical values. Numpy + safetensors only (peer venvs import it).
"""
from __future__ import annotations

import json
import os

import numpy as np

SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, head_dim=64, rms_norm_eps=1e-5,
                    rope_theta=100000.0, tie_word_embeddings=True, max_position_embeddings=8192)


def projection_shapes(shape: dict = SMOLLM2_135M) -> list[tuple[int, int]]:
    """[in, out] shapes of one layer's 7 projections (q, k, v, o, gate, up, down), in forward order."""
    d, f, hd = shape["hidden_size"], shape["intermediate_size"], shape["head_dim"]
    q, kv = shape["num_attention_heads"] * hd, shape["num_key_value_heads"] * hd
    return [(d, q), (d, kv), (d, kv), (q, d), (d, f), (d, f), (f, d)]


def hf_config(shape: dict) -> dict:
    """config.json of a LlamaForCausalLM with these shapes."""
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32", "bos_token_id": 1,
            "eos_token_id": 2, "pad_token_id": 0, "initializer_range": 0.02, "use_cache": True, **shape}


def write_random_hf(folder: str, shape: dict = SMOLLM2_135M, seed: int = 0) -> str:
    """Writes config.json + model.safetensors (HF names, [out, in] weights) unless already there."""
    from safetensors.numpy import save_file
    path = os.path.join(folder, "model.safetensors")
    if os.path.exists(path):
        return folder
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    d, f, hd = shape["hidden_size"], shape["intermediate_size"], shape["head_dim"]
    h, kv = shape["num_attention_heads"], shape["num_key_value_heads"]

    def normal(*s):
        return (rng.standard_normal(s, dtype=np.float32) * 0.02).astype(np.float32)

    t = {"model.embed_tokens.weight": normal(shape["vocab_size"], d), "model.norm.weight": np.ones(d, np.float32)}
    for i in range(shape["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = normal(h * hd, d)
        t[p + "self_attn.k_proj.weight"] = normal(kv * hd, d)
        t[p + "self_attn.v_proj.weight"] = normal(kv * hd, d)
        t[p + "self_attn.o_proj.weight"] = normal(d, h * hd)
        t[p + "mlp.gate_proj.weight"] = normal(f, d)
        t[p + "mlp.up_proj.weight"] = normal(f, d)
        t[p + "mlp.down_proj.weight"] = normal(d, f)
        t[p + "input_layernorm.weight"] = np.ones(d, np.float32)
        t[p + "post_attention_layernorm.weight"] = np.ones(d, np.float32)
    save_file(t, path + ".tmp", metadata={"format": "pt"})
    os.replace(path + ".tmp", path)
    with open(os.path.join(folder, "config.json"), "w") as fh:
        json.dump(hf_config(shape), fh, indent=1)
    return folder


def ours_config(c: dict = SMOLLM2_135M):
    """An HF-style shape dict (or config.json) as an rlvr_jax ModelConfig (main venv only)."""
    from rlvr_jax.models import ModelConfig
    return ModelConfig(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"],
                       intermediate_size=c["intermediate_size"], num_layers=c["num_hidden_layers"],
                       num_heads=c["num_attention_heads"], num_kv_heads=c["num_key_value_heads"],
                       head_dim=c["head_dim"], rope_theta=c["rope_theta"], rms_norm_eps=c["rms_norm_eps"],
                       tie_word_embeddings=c["tie_word_embeddings"],
                       max_position_embeddings=c["max_position_embeddings"])


def load_ours(folder: str):
    """The folder as an rlvr_jax Transformer (main venv only): HF [out, in] -> our [in, out] kernels."""
    from flax import nnx
    from safetensors.numpy import load_file

    from rlvr_jax.models import create
    with open(os.path.join(folder, "config.json")) as fh:
        c = json.load(fh)
    model = create(ours_config(c), 0)
    tensors = load_file(os.path.join(folder, "model.safetensors"))
    flat = []
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        names = [str(p) for p in path]
        leaf = names[-1]
        hf = "model." + ".".join(names[:-1] if leaf in ("kernel", "scale") else names) + ".weight"
        w = tensors[hf]
        if leaf == "kernel":
            w = w.T
        if tuple(w.shape) != tuple(var.shape):
            raise ValueError(f"{hf}: shape {w.shape} does not match the model's {var.shape}")
        flat.append((path, var.replace(np.ascontiguousarray(w))))
    nnx.update(model, nnx.from_flat_state(flat))
    return model
