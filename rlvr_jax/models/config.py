"""Model hyper-parameters: one frozen dataclass for the Llama / SmolLM2, Qwen2.5 and Qwen3 families."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

FAMILIES = ("llama", "qwen2", "qwen3")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
DTYPES = tuple(_DTYPES)  # model.dtype / model.param_dtype


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama-3 style frequency scaling (`rope_type: llama3` in HF configs)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of one decoder-only transformer; hashable so it can be a static jit argument."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None  # None: hidden_size // num_heads
    family: str = "llama"  # llama | qwen2 (q/k/v bias) | qwen3 (q/k RMSNorm)
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    qk_norm: bool = False
    max_position_embeddings: int = 2048
    dtype: str = "float32"  # compute dtype
    param_dtype: str = "float32"
    remat: bool = False  # rematerialise each layer in the backward pass
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"model.family: unknown architecture {self.family!r}; expected one of {FAMILIES}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in _DTYPES:
                raise ValueError(f"model.{name}: {getattr(self, name)!r} is not one of {sorted(_DTYPES)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"model.num_kv_heads: {self.num_kv_heads} must divide num_heads={self.num_heads}")
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ValueError(f"model.hidden_size: {self.hidden_size} not divisible by num_heads={self.num_heads}")

    @property
    def head_dim_(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

    @property
    def jnp_dtype(self):
        return _DTYPES[self.dtype]

    @property
    def jnp_param_dtype(self):
        return _DTYPES[self.param_dtype]

    def replace(self, **kw: Any) -> "ModelConfig":
        return dataclasses.replace(self, **kw)

    def num_params(self) -> int:
        """Parameter count, from the shapes alone."""
        d, hd = self.hidden_size, self.head_dim_
        attn = d * hd * (self.num_heads * 2 + self.num_kv_heads * 2)
        if self.attention_bias:
            attn += hd * (self.num_heads + 2 * self.num_kv_heads)
        if self.qk_norm:
            attn += 2 * hd
        mlp = 3 * d * self.intermediate_size
        per_layer = attn + mlp + 2 * d
        head = 0 if self.tie_word_embeddings else self.vocab_size * d
        return self.vocab_size * d + self.num_layers * per_layer + d + head


def family_defaults(family: str) -> dict:
    """Flags implied by a family name."""
    return {
        "llama": dict(attention_bias=False, qk_norm=False),
        "qwen2": dict(attention_bias=True, qk_norm=False),
        "qwen3": dict(attention_bias=False, qk_norm=True),
    }[family]


def tiny(family: str = "llama", **kw: Any) -> ModelConfig:
    """A tiny config for tests and the embedded demo."""
    base = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                num_kv_heads=2, family=family, max_position_embeddings=256)
    base.update(family_defaults(family))
    base.update(kw)
    return ModelConfig(**base)


# Real shapes (no weights): used by benchmarks and the AOT planner.
PRESETS = {
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
                         num_heads=9, num_kv_heads=3, family="llama", rope_theta=100000.0,
                         tie_word_embeddings=True, max_position_embeddings=8192, rms_norm_eps=1e-5),
    "qwen3-0.6b": dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_layers=28,
                       num_heads=16, num_kv_heads=8, head_dim=128, family="qwen3", qk_norm=True,
                       rope_theta=1000000.0, tie_word_embeddings=True, max_position_embeddings=40960,
                       rms_norm_eps=1e-6),
    "qwen3-1.7b": dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_layers=28,
                       num_heads=16, num_kv_heads=8, head_dim=128, family="qwen3", qk_norm=True,
                       rope_theta=1000000.0, tie_word_embeddings=True, max_position_embeddings=40960,
                       rms_norm_eps=1e-6),
    "qwen3-4b": dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_layers=36,
                     num_heads=32, num_kv_heads=8, head_dim=128, family="qwen3", qk_norm=True,
                     rope_theta=1000000.0, tie_word_embeddings=True, max_position_embeddings=40960,
                     rms_norm_eps=1e-6),
    "qwen3-8b": dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_layers=36,
                     num_heads=32, num_kv_heads=8, head_dim=128, family="qwen3", qk_norm=True,
                     rope_theta=1000000.0, tie_word_embeddings=False, max_position_embeddings=40960,
                     rms_norm_eps=1e-6),
    "qwen3-14b": dict(vocab_size=151936, hidden_size=5120, intermediate_size=17408, num_layers=40,
                      num_heads=40, num_kv_heads=8, head_dim=128, family="qwen3", qk_norm=True,
                      rope_theta=1000000.0, tie_word_embeddings=False, max_position_embeddings=40960,
                      rms_norm_eps=1e-6),
}


def preset(name: str, **kw: Any) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"model.preset: unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **kw})
