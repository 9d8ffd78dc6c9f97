"""The decoder-only policy transformer (Llama 3 / SmolLM2, Qwen2.5, Qwen3) and its KV cache.

`Transformer.__call__` serves three uses with one code path:
  * full forward (training, scoring): no cache; causal mask plus a key-validity mask for padding;
  * prefill: a cache is given, the T prompt tokens are written at `cache_index`;
  * decode: the same with T = 1.
Causality is by cache slot, RoPE by the explicit `positions_BxT`, so left-padded prompts work.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from rlvr_jax.models.config import ModelConfig
from rlvr_jax.models.layers import Block, RMSNorm, rope_inv_freq

KVCache = list  # per layer: (k_BxKxSxD, v_BxKxSxD)
CACHE_AXES = ("batch", "kv_heads", "length", "head_dim")  # logical axes of one cache array
CACHE_LEN_AXIS = 2


def cache_length(cache: KVCache) -> int:
    """Number of slots S of a KV cache."""
    return cache[0][0].shape[CACHE_LEN_AXIS]


def prompt_positions(prompt_mask_BxP):
    """RoPE positions of left-padded prompts: 0 at the first real token (padding gets 0 too)."""
    return jnp.maximum(jnp.cumsum(prompt_mask_BxP.astype(jnp.int32), axis=-1) - 1, 0)


class Transformer(nnx.Module):
    """Token ids -> next-token logits (or final hidden states)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        emb = nnx.initializers.normal(0.02)(rngs.params(), (cfg.vocab_size, cfg.hidden_size), cfg.jnp_param_dtype)
        self.embed_tokens = nnx.Param(emb, sharding_names=("vocab", "embed"), eager_sharding=False)
        self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, cfg=cfg, rngs=rngs)
        if cfg.tie_word_embeddings:
            self.lm_head = None
        else:
            head = nnx.initializers.normal(0.02)(rngs.params(), (cfg.hidden_size, cfg.vocab_size), cfg.jnp_param_dtype)
            self.lm_head = nnx.Param(head, sharding_names=("embed", "vocab"), eager_sharding=False)

    # -- pieces usable on their own (chunked logprobs need `project`) --
    def embed(self, tokens_BxT):
        return jnp.take(self.embed_tokens[...], tokens_BxT, axis=0).astype(self.cfg.jnp_dtype)

    def project(self, h_BxTxD):
        """Final hidden states -> logits in the compute dtype (overridden by the sampler's kernel copy)."""
        dt = self.cfg.jnp_dtype
        if self.lm_head is None:
            return jnp.einsum("btd,vd->btv", h_BxTxD.astype(dt), self.embed_tokens[...].astype(dt))
        return jnp.einsum("btd,dv->btv", h_BxTxD.astype(dt), self.lm_head[...].astype(dt))

    def __call__(self, tokens_BxT, positions_BxT=None, *, kv_mask_BxS=None, cache: KVCache | None = None,
                 cache_index=None, return_hidden: bool = False, remat: bool | None = None):
        """Returns (logits_BxTxV or hidden_BxTxD, new_cache or None).

        kv_mask_BxS: which key slots hold real tokens (S = T without cache, the cache length with one).
        cache_index: the slot where this call's first token is written: a scalar (every row) or one per
        row [B] (the continuous engine, where each slot has its own write index).
        remat: rematerialise each layer in the backward pass; default `cfg.remat` without a cache (with a
        cache only when asked: the train step's shared-prompt forward differentiates through one).
        """
        B, T = tokens_BxT.shape
        if positions_BxT is None:
            positions_BxT = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
        if cache is None:
            S = T
            q_slot = jnp.arange(T)
            if kv_mask_BxS is None:
                kv_mask_BxS = jnp.ones((B, T), bool)
        else:
            S = cache_length(cache)
            if kv_mask_BxS is None:
                raise ValueError("kv_mask_BxS is required with a cache (which slots hold real tokens)")
            q_slot = cache_index + jnp.arange(T) if jnp.ndim(cache_index) == 0 else (
                jnp.asarray(cache_index)[:, None] + jnp.arange(T)[None])  # [T] or [B, T]
        q_slot_BxT = jnp.broadcast_to(q_slot, (B, T))
        causal_BxTxS = jnp.arange(S)[None, None, :] <= q_slot_BxT[:, :, None]
        mask_BxTxS = causal_BxTxS & kv_mask_BxS[:, None, :].astype(bool)
        inv_freq = rope_inv_freq(self.cfg)
        if remat is None:
            remat = self.cfg.remat and cache is None

        x = self.embed(tokens_BxT)
        new_cache = []
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else cache[i]
            if remat:
                # rematerialise the layer in the backward pass (functional split: no Param mutation
                # across trace levels)
                gdef, lstate = nnx.split(layer)

                def run(st, x_, pos_, m_, c_, idx_, gdef=gdef):
                    return nnx.merge(gdef, st)(x_, pos_, m_, inv_freq, c_, idx_)
                x, c = jax.checkpoint(run)(lstate, x, positions_BxT, mask_BxTxS, layer_cache, cache_index)
            else:
                x, c = layer(x, positions_BxT, mask_BxTxS, inv_freq, layer_cache, cache_index)
            new_cache.append(c)
        h = self.norm(x)
        out = h if return_hidden else self.project(h)
        return out, (new_cache if cache is not None else None)


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=None) -> KVCache:
    """Zero KV cache: per layer a (k, v) pair of [batch, kv_heads, length, head_dim]."""
    dtype = dtype or cfg.jnp_dtype
    shape = (batch, cfg.num_kv_heads, length, cfg.head_dim_)
    return [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(cfg.num_layers)]


def create(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """A freshly initialised model."""
    return Transformer(cfg, rngs=nnx.Rngs(params=seed))


def abstract(cfg: ModelConfig) -> Transformer:
    """The model with ShapeDtypeStruct leaves: no memory allocated (for loading and AOT planning)."""
    return nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(params=0)))


def memory_config(policy: ModelConfig, *, width_ratio: float = 0.25, num_layers: int | None = None,
                  **overrides) -> ModelConfig:
    """The DLC memory network: the policy's architecture and vocabulary at another width/depth.

    Width scales hidden and MLP sizes and the number of heads (head_dim kept, heads >= 1,
    kv heads dividing heads), so the memory network reads the same token ids.
    """
    if not 0 < width_ratio <= 1:
        raise ValueError(f"memory.width_ratio: {width_ratio} must be in (0, 1]")
    heads = max(1, round(policy.num_heads * width_ratio))
    kv = max(1, min(policy.num_kv_heads, heads))
    while heads % kv:
        kv -= 1
    hd = policy.head_dim_
    kw = dict(num_heads=heads, num_kv_heads=kv, head_dim=hd, hidden_size=max(hd, heads * hd),
              intermediate_size=max(8, int(round(policy.intermediate_size * width_ratio / 8)) * 8),
              num_layers=num_layers if num_layers is not None else max(1, policy.num_layers // 2))
    kw.update(overrides)
    return policy.replace(**kw)


def memory_from_policy(policy: Transformer, cfg: ModelConfig | None = None, seed: int = 0) -> Transformer:
    """A memory network initialised from a policy checkpoint.

    With the same config it is a copy of the policy; with a smaller one it takes the
    embeddings (and norms) it can share and the first layers' leading slices, so it
    starts out as a low-width distillation seed rather than from noise.
    """
    cfg = cfg or policy.cfg
    mem = create(cfg, seed)
    src = dict(nnx.to_flat_state(nnx.state(policy, nnx.Param)))
    dst = nnx.state(mem, nnx.Param)
    flat = []
    for path, var in nnx.to_flat_state(dst):
        if path in src:
            s = src[path][...]
            d = var[...]
            sl = tuple(slice(0, min(a, b)) for a, b in zip(d.shape, s.shape))
            new = d.at[sl].set(s[sl].astype(d.dtype)) if d.ndim else s.astype(d.dtype)
            var = var.replace(new)
        flat.append((path, var))
    nnx.update(mem, nnx.from_flat_state(flat))
    return mem
