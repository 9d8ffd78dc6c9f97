"""Transformer building blocks in Flax NNX: RMSNorm, RoPE, GQA attention with a KV cache, SwiGLU.

Every parameter carries logical axis names (`sharding_names` metadata) that
`rlvr_jax.parallel` maps to mesh axes; the names used are
vocab, embed, q_heads, kv_heads, head_dim, mlp, norm.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from rlvr_jax.models.config import ModelConfig
from rlvr_jax.models.matmul import rows_matmul

NEG_INF = -1e30  # finite, so fully masked rows give a uniform (not NaN) softmax


def _param(rngs: nnx.Rngs, init, shape, dtype, names):
    return nnx.Param(init(rngs.params(), shape, dtype), sharding_names=names, eager_sharding=False)


class Dense(nnx.Module):
    """y = x @ W (+ b) (+ scale * (x @ A) @ B with LoRA adapters, `models.lora.add_lora`); W stored [in, out]
    as Flax does (HF stores the transpose), or int8 with a per-output-channel scale under QLoRA."""

    def __init__(self, d_in: int, d_out: int, names: tuple, *, bias: bool, cfg: ModelConfig, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.02)
        self.kernel = _param(rngs, init, (d_in, d_out), cfg.jnp_param_dtype, names)
        self.bias = (_param(rngs, nnx.initializers.zeros, (d_out,), cfg.jnp_param_dtype, names[1:])
                     if bias else None)
        self.dtype = cfg.jnp_dtype
        self.lora_a = self.lora_b = nnx.data(None)  # nnx.LoRAParam [in, r] and [r, out] once adapters are added
        self.lora_scale = 0.0
        self.kernel_scale = nnx.data(None)  # [out] float32 when the kernel is stored int8 (`lora.quantize_base`)

    def weight(self):
        """W [in, out] in the compute dtype (an int8 kernel times its per-output-channel scale)."""
        w = self.kernel[...].astype(self.dtype)
        if self.kernel_scale is not None:
            w = w * self.kernel_scale[...].astype(self.dtype)
        return w

    def __call__(self, x):
        x = x.astype(self.dtype)
        return self.finish(x, rows_matmul(x, self.weight()))

    def finish(self, x, y):
        """y (= x @ W in the compute dtype) plus the adapters' term and the bias: shared with the sampler's
        kernel subclass (`sampling.decode_kernels.PackedDense`), which computes x @ W its own way."""
        if self.lora_a is not None:
            x = x.astype(self.dtype)
            low = rows_matmul(x, self.lora_a[...].astype(self.dtype))
            # the scale goes on B [r, out], not on the product: XLA:CPU contracts `y + s * (low @ B)` with the
            # consumers (a norm's mean of squares) into other roundings, so a zero B would not leave y bit-exact
            y = y + rows_matmul(low, (self.lora_b[...] * self.lora_scale).astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class RMSNorm(nnx.Module):
    """HF-exact RMSNorm: normalise in float32, cast back, then scale."""

    def __init__(self, dim: int, *, eps: float, cfg: ModelConfig, rngs: nnx.Rngs, names=("norm",)):
        del rngs
        self.scale = nnx.Param(jnp.ones((dim,), cfg.jnp_param_dtype), sharding_names=names, eager_sharding=False)
        self.eps = eps

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(x.dtype) * y.astype(x.dtype)


def rope_inv_freq(cfg: ModelConfig) -> jnp.ndarray:
    """Inverse frequencies [head_dim/2], with optional Llama-3 scaling (as HF `_compute_llama3_parameters`)."""
    hd = cfg.head_dim_
    inv = 1.0 / (cfg.rope_theta ** (jnp.arange(0, hd, 2, dtype=jnp.float32) / hd))
    s = cfg.rope_scaling
    if s is None:
        return inv
    low_wl = s.original_max_position_embeddings / s.low_freq_factor
    high_wl = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = jnp.where(wavelen > low_wl, inv / s.factor, inv)
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= high_wl) & (wavelen <= low_wl)
    return jnp.where(medium, smoothed, scaled)


def apply_rope(x_BxTxHxD, positions_BxT, inv_freq):
    """Rotate-half RoPE (the HF convention)."""
    ang = positions_BxT[..., None].astype(jnp.float32) * inv_freq  # B,T,D/2
    cos = jnp.cos(jnp.concatenate([ang, ang], -1))[:, :, None, :]
    sin = jnp.sin(jnp.concatenate([ang, ang], -1))[:, :, None, :]
    x = x_BxTxHxD.astype(jnp.float32)
    half = x.shape[-1] // 2
    rot = jnp.concatenate([-x[..., half:], x[..., :half]], -1)
    return (x * cos + rot * sin).astype(x_BxTxHxD.dtype)


def write_cache(cache_BxKxSxD, x_BxKxTxD, cache_index):
    """Writes T new keys (or values) into the cache at slot `cache_index`: a scalar (every row the same
    slot, the static sampler) or one slot per row [B] (the continuous engine's slots)."""
    x = x_BxKxTxD.astype(cache_BxKxSxD.dtype)
    if jnp.ndim(cache_index) == 0:
        return jax.lax.dynamic_update_slice_in_dim(cache_BxKxSxD, x, cache_index, axis=2)
    return jax.vmap(lambda c, u, i: jax.lax.dynamic_update_slice_in_dim(c, u, i, axis=1))(
        cache_BxKxSxD, x, cache_index)


class Attention(nnx.Module):
    """Grouped-query attention; with a cache it writes the new keys/values at `cache_index`."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d, hd = cfg.hidden_size, cfg.head_dim_
        self.cfg = cfg
        b = cfg.attention_bias
        self.q_proj = Dense(d, cfg.num_heads * hd, ("embed", "q_heads"), bias=b, cfg=cfg, rngs=rngs)
        self.k_proj = Dense(d, cfg.num_kv_heads * hd, ("embed", "kv_heads"), bias=b, cfg=cfg, rngs=rngs)
        self.v_proj = Dense(d, cfg.num_kv_heads * hd, ("embed", "kv_heads"), bias=b, cfg=cfg, rngs=rngs)
        self.o_proj = Dense(cfg.num_heads * hd, d, ("q_heads", "embed"), bias=False, cfg=cfg, rngs=rngs)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(hd, eps=cfg.rms_norm_eps, cfg=cfg, rngs=rngs, names=("head_dim",))
            self.k_norm = RMSNorm(hd, eps=cfg.rms_norm_eps, cfg=cfg, rngs=rngs, names=("head_dim",))
        else:
            self.q_norm = self.k_norm = None

    def __call__(self, x_BxTxD, positions_BxT, mask_BxTxS, inv_freq, cache=None, cache_index=None):
        cfg = self.cfg
        B, T, _ = x_BxTxD.shape
        hd, H, K = cfg.head_dim_, cfg.num_heads, cfg.num_kv_heads
        q = self.q_proj(x_BxTxD).reshape(B, T, H, hd)
        k = self.k_proj(x_BxTxD).reshape(B, T, K, hd)
        v = self.v_proj(x_BxTxD).reshape(B, T, K, hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rope(q, positions_BxT, inv_freq)
        k = apply_rope(k, positions_BxT, inv_freq)
        # cache layout [B, K, S, D]: a decode step writes one slot in place and attention reads
        # the cache as stored (no per-step transpose/copy of the whole cache)
        k = k.transpose(0, 2, 1, 3)
        v = v.transpose(0, 2, 1, 3)
        if cache is not None:
            k_cache, v_cache = cache
            k, v = write_cache(k_cache, k, cache_index), write_cache(v_cache, v, cache_index)
            new_cache = (k, v)
        else:
            new_cache = None
        return self.o_proj(self.attend(q, k, v, mask_BxTxS)), new_cache

    def attend(self, q_BxTxHxD, k_BxKxSxD, v_BxKxSxD, mask_BxTxS):
        """Softmax attention over the (cached) keys/values -> [B, T, H*D]; a method of its own so the
        sampler's decode-time copy can swap in a kernel (`sampling.decode_kernels`)."""
        B, T, H, hd = q_BxTxHxD.shape
        K = k_BxKxSxD.shape[1]
        dt = q_BxTxHxD.dtype
        qg = q_BxTxHxD.reshape(B, T, K, H // K, hd).transpose(0, 2, 3, 1, 4)  # B,K,G,T,D
        scores = jnp.einsum("bkgtd,bksd->bkgts", qg, k_BxKxSxD.astype(dt),
                            preferred_element_type=jnp.float32) / math.sqrt(hd)
        scores = jnp.where(mask_BxTxS[:, None, None, :, :], scores, NEG_INF)
        probs = jax.nn.softmax(scores, axis=-1).astype(dt)
        out = jnp.einsum("bkgts,bksd->bkgtd", probs, v_BxKxSxD.astype(dt))
        return out.transpose(0, 3, 1, 2, 4).reshape(B, T, H * hd)


class MLP(nnx.Module):
    """SwiGLU feed-forward."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = Dense(d, f, ("embed", "mlp"), bias=False, cfg=cfg, rngs=rngs)
        self.up_proj = Dense(d, f, ("embed", "mlp"), bias=False, cfg=cfg, rngs=rngs)
        self.down_proj = Dense(f, d, ("mlp", "embed"), bias=False, cfg=cfg, rngs=rngs)

    def __call__(self, x):
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nnx.Module):
    """Pre-norm decoder layer."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, cfg=cfg, rngs=rngs)
        self.self_attn = Attention(cfg, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, cfg=cfg, rngs=rngs)
        self.mlp = MLP(cfg, rngs=rngs)

    def __call__(self, x, positions_BxT, mask_BxTxS, inv_freq, cache=None, cache_index=None):
        h, new_cache = self.self_attn(self.input_layernorm(x), positions_BxT, mask_BxTxS, inv_freq,
                                      cache, cache_index)
        x = x + h
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, new_cache
