"""`Sampler`: the user-facing, jitted sampler. Pads prompts into length buckets, keeps one compiled
program per (bucket, rows, SamplingConfig, models), donates and reuses the KV caches, and counts
compilations so tests and logs can see recompiles.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding

from rlvr_jax.models.transformer import init_cache
from rlvr_jax.sampling.config import SamplingConfig, bucket_length
from rlvr_jax.sampling.core import _KV, cache_len, decode_models, make_constrain, sample_with_cache
from rlvr_jax.sampling.decode_kernels import decode_matmul, packed_arrays, packed_shapes
from rlvr_jax.sampling.state import Rollout


def pad_to_bucket(prompts_BxP, prompt_mask_BxP, buckets: tuple[int, ...], pad_id: int):
    """Left-pads host prompts [B, P] (already left-padded or not) to the smallest bucket >= P."""
    prompts = np.asarray(prompts_BxP, np.int32)
    mask = np.ones(prompts.shape, bool) if prompt_mask_BxP is None else np.asarray(prompt_mask_BxP, bool)
    if prompts.ndim != 2 or prompts.shape != mask.shape:
        raise ValueError(f"sample: prompts {prompts.shape} and prompt_mask {mask.shape} must be the same [B, P]")
    if not mask.any(axis=1).all():
        raise ValueError(f"sample: prompt row {int(np.argmin(mask.any(axis=1)))} has no real token")
    longest = int(mask.sum(axis=1).max())
    P = bucket_length(longest, buckets)
    # re-left-align: real tokens keep their order and end at the last slot
    order = np.argsort(mask, axis=1, kind="stable")  # False (pad) first, True (real) last, stable
    prompts = np.take_along_axis(np.where(mask, prompts, pad_id), order, axis=1)[:, -longest:]
    mask = np.take_along_axis(mask, order, axis=1)[:, -longest:]
    pad = P - longest
    prompts = np.pad(prompts, ((0, 0), (pad, 0)), constant_values=pad_id)
    mask = np.pad(mask, ((0, 0), (pad, 0)), constant_values=False)
    return prompts, mask


def row_limits(limits_B, rows: int, max_new_tokens: int) -> np.ndarray:
    """Per-row caps on new tokens as int32 [rows] (all max_new_tokens when None); one error if malformed."""
    if limits_B is None:
        return np.full((rows,), max_new_tokens, np.int32)
    lim = np.asarray(limits_B)
    if lim.shape != (rows,) or (lim < 1).any() or (lim > max_new_tokens).any():
        raise ValueError(f"sample: limits_B must be [{rows}] ints in [1, max_new_tokens={max_new_tokens}], "
                         f"got shape {lim.shape}, range [{lim.min() if lim.size else '-'}, "
                         f"{lim.max() if lim.size else '-'}]")
    return lim.astype(np.int32)


class Sampler:
    """Jitted group sampler; `num_compiles` counts traces (one per new bucket/rows/config/model)."""

    def __init__(self, mesh=None, rules=None, keep_cache: bool = True):
        self.mesh, self.rules = mesh, rules
        self.keep_cache = keep_cache
        self.num_compiles = 0
        self._caches: dict = {}
        self._jit = jax.jit(self._run, static_argnames=("cfg", "policy_graphdef", "memory_graphdef"),
                            donate_argnames=("cache", "memory_cache", "packed"))

    def _run(self, policy_state, memory_state, prompts_BxP, prompt_mask_BxP, key, cache, memory_cache, packed,
             limit_B, *, cfg, policy_graphdef, memory_graphdef):
        self.num_compiles += 1  # runs only while tracing
        policy = nnx.merge(policy_graphdef, policy_state)
        memory = None if memory_graphdef is None else nnx.merge(memory_graphdef, memory_state)
        policy, memory = decode_models(policy, memory, cfg, self.mesh, packed or (None, None))
        out = sample_with_cache(policy, prompts_BxP, prompt_mask_BxP, key, cfg, cache, memory, memory_cache,
                                make_constrain(self.mesh, self.rules), limit_B)
        if packed is None:
            return out, None
        return out, (packed_arrays(policy), None if memory is None else packed_arrays(memory))

    def _new_cache(self, model_cfg, rows: int, length: int):
        if self.mesh is None:
            return init_cache(model_cfg, rows, length)
        from rlvr_jax.parallel import SAMPLE_RULES, logical_to_spec
        shape = (rows, model_cfg.num_kv_heads, length, model_cfg.head_dim_)
        sh = NamedSharding(self.mesh, logical_to_spec(_KV, shape, self.mesh, self.rules or SAMPLE_RULES))
        make = jax.jit(lambda: init_cache(model_cfg, rows, length), out_shardings=[(sh, sh)] * model_cfg.num_layers)
        return make()

    @staticmethod
    def _cache_key(name, model_cfg, rows, length):
        return (name, model_cfg, rows, length)

    @staticmethod
    def _packed_key(name, model_cfg):
        return (name + "_packed", model_cfg)

    def _take_cache(self, name, model_cfg, rows, length):
        cache = self._caches.pop(self._cache_key(name, model_cfg, rows, length), None)
        return cache if cache is not None else self._new_cache(model_cfg, rows, length)

    def _take_packed(self, name, model):
        """Buffers for the CPU kernels' packed weights, kept between calls like the caches (and donated):
        packing into memory already paged in is several times faster than into fresh pages."""
        bufs = self._caches.pop(self._packed_key(name, model.cfg), None)
        if bufs is None:
            # placed as the jit returns them (replicated on the mesh), so the next call does not recompile
            where = None if self.mesh is None else NamedSharding(self.mesh, jax.sharding.PartitionSpec())
            bufs = [jax.device_put(jnp.zeros(s, jnp.float32), where) for s in packed_shapes(model)]
        return bufs

    def clear(self):
        """Frees the kept KV caches and packed weights."""
        self._caches.clear()

    def __call__(self, policy, prompts_BxP, prompt_mask_BxP, key, cfg: SamplingConfig, memory=None,
                 limits_B=None) -> Rollout:
        """Samples cfg.num_samples responses per prompt; host prompts [B, P] are padded to a bucket.

        limits_B: optional per-row caps on new tokens [B * G] (row i*G + j: sample j of prompt i).
        """
        prompts, mask = pad_to_bucket(prompts_BxP, prompt_mask_BxP, cfg.prompt_buckets, cfg.pad_id)
        if memory is not None and memory.cfg.vocab_size != policy.cfg.vocab_size:
            raise ValueError(f"memory: vocab_size {memory.cfg.vocab_size} differs from the policy's "
                             f"{policy.cfg.vocab_size}; DLC needs a shared tokenizer")
        B, P = prompts.shape
        rows, S = B * cfg.num_samples, cache_len(P, cfg)
        if self.mesh is not None:
            from rlvr_jax.parallel import SAMPLE_RULES, shard_batch
            prompts, mask = shard_batch((prompts, mask), self.mesh, self.rules or SAMPLE_RULES)
        gp, sp = nnx.split(policy)
        gm, sm = (None, None) if memory is None else nnx.split(memory)
        cache = self._take_cache("policy", policy.cfg, rows, S)
        mcache = None if memory is None else self._take_cache("memory", memory.cfg, rows, S)
        limits = row_limits(limits_B, rows, cfg.max_new_tokens)
        packed = None
        if decode_matmul(cfg.matmul, self.mesh, (policy, memory)) == "cpu_kernel":
            packed = (self._take_packed("policy", policy),
                      None if memory is None else self._take_packed("memory", memory))
        (rollout, cache, mcache), packed = self._jit(sp, sm, jnp.asarray(prompts), jnp.asarray(mask), key, cache,
                                                     mcache, packed, limits, cfg=cfg, policy_graphdef=gp,
                                                     memory_graphdef=gm)
        if self.keep_cache:
            for i, (name, model, kv) in enumerate((("policy", policy, cache), ("memory", memory, mcache))):
                if model is None:
                    continue
                self._caches[self._cache_key(name, model.cfg, rows, S)] = kv
                if packed is not None:
                    self._caches[self._packed_key(name, model.cfg)] = packed[i]
        return rollout


_DEFAULT: list = []


def default_sampler() -> Sampler:
    """The process-wide unsharded `Sampler` behind `sample` and `generate` (compiled programs are reused)."""
    if not _DEFAULT:
        _DEFAULT.append(Sampler())
    return _DEFAULT[0]


def sample(policy, prompts_BxP, prompt_mask_BxP, key, cfg: SamplingConfig, memory=None) -> Rollout:
    """One-call sampling: cfg.num_samples responses per left-padded prompt row, as a `Rollout`."""
    return default_sampler()(policy, prompts_BxP, prompt_mask_BxP, key, cfg, memory)
